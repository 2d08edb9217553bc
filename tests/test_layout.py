"""The package's shape: one import name, light imports where no model is built, one-way arrows."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def loaded_after(code: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT.parent
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import sensorwatch.pipeline.settings",
        "import sensorwatch.schemas.readings, sensorwatch.schemas.events",
        "import sensorwatch.models.recipe, sensorwatch.models.presets, sensorwatch.models.metrics",
        "import sensorwatch.models.registry",
        "import sensorwatch.pipeline.cli",
    ],
)
def test_no_keras_or_tensorflow_where_no_model_is_built(code: str) -> None:
    loaded = loaded_after(code)
    assert not loaded & {"keras", "tensorflow", "jax", "torch"}, code


def test_help_loads_no_deep_learning_stack() -> None:
    loaded = loaded_after(
        "from sensorwatch.pipeline.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert "keras" not in loaded and "tensorflow" not in loaded


def test_nothing_generic_is_installed_at_the_top_level() -> None:
    loaded = loaded_after("import sensorwatch.pipeline.cli")
    assert not loaded & {"models", "pipeline", "schemas"}
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        "sensorwatch." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("schemas", "models", "pipeline")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert listed == on_disk  # every sub-package on disk is installed, under sensorwatch


ALLOWED = {
    "schemas": {"schemas"},
    "models": {"schemas", "models"},
    "pipeline": {"schemas", "models", "pipeline"},
}


@pytest.mark.parametrize("top", sorted(ALLOWED))
def test_imports_point_one_way(top: str) -> None:
    """pipeline → models → schemas, never back."""
    for path in (ROOT / top).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("sensorwatch.")
            ):
                target = node.module.split(".")[1]
                assert target in ALLOWED[top], f"{path.relative_to(ROOT)} imports {node.module}"
