"""Every docstring example in the installed package runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
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


def test_the_package_has_its_parts() -> None:
    for part in (
        "sensorwatch.schemas",
        "sensorwatch.models.recipe",
        "sensorwatch.pipeline.stream.step",
    ):
        assert part in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
