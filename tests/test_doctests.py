"""Every docstring example in the installed package runs and shows what it says; every module
imports."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import sensorwatch.models
import sensorwatch.pipeline
import sensorwatch.schemas

PACKAGES = (sensorwatch.schemas, sensorwatch.models, sensorwatch.pipeline)
# Running the CLI's __main__ would start the command line.
MODULES = sorted(
    [p.__name__ for p in PACKAGES]
    + [
        m.name
        for p in PACKAGES
        for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")
        if not m.name.endswith("__main__")
    ]
)


def _has_examples(name: str) -> bool:
    """Whether the module's source holds a docstring example (read, not imported)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    with open(spec.origin, encoding="utf-8") as source:
        return ">>> " in source.read()


# Only the modules with examples: a module without any would pass having checked nothing.
EXAMPLES = [name for name in MODULES if _has_examples(name)]


def test_the_package_has_its_parts() -> None:
    for part in (
        "sensorwatch.schemas",
        "sensorwatch.models.recipe",
        "sensorwatch.pipeline.stream.step",
    ):
        assert part in MODULES
    for part in ("sensorwatch.models.recipe", "sensorwatch.schemas.readings"):
        assert part in EXAMPLES


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__name__ == name
    assert (module.__doc__ or "").strip(), f"{name} says in no docstring what it is for"


@pytest.mark.parametrize("name", EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>> ' in its source but no example doctest finds"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
