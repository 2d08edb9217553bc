"""The package's shape: one import name, light imports where no model is built, one-way arrows
between the top folders and among ``pipeline``'s parts, and ARCHITECTURE.md naming every module."""

from __future__ import annotations

import ast
import re
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


def _for_type_checkers(tree: ast.Module) -> set[ast.AST]:
    """The nodes under ``if TYPE_CHECKING:``: imports that never run."""
    out: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            out.update(n for child in node.body for n in ast.walk(child))
    return out


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """Every ``sensorwatch`` module ``path`` imports, anywhere in it (inside functions too): (module,
    line, whether only type checkers see it). ``from sensorwatch.pipeline import x`` names
    ``sensorwatch.pipeline.x``."""
    tree = ast.parse(path.read_text())
    checking = _for_type_checkers(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module.count(".") < 2:  # a package: what it imports may be modules of it
                modules = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found += [
            (m, node.lineno, node in checking) for m in modules if m.startswith("sensorwatch.")
        ]
    return found


@pytest.mark.parametrize("top", sorted(ALLOWED))
def test_imports_point_one_way(top: str) -> None:
    """pipeline → models → schemas, never back."""
    for path in (ROOT / top).rglob("*.py"):
        for module, line, _ in imports_of(path):
            target = module.split(".")[1]
            assert target in ALLOWED[top], f"{path.relative_to(ROOT)}:{line} imports {module}"


# The order among pipeline's parts (its sub-packages and the modules directly in it), lowest
# first. A part imports only parts of the rows above its own, never one beside it or below it.
# Imports inside functions count; imports only type checkers see (``if TYPE_CHECKING:``) do not,
# since they never run. ARCHITECTURE.md states the same order.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),  # what a user can cause: one line and exit 2
    ("settings",),  # the one Settings object (a bad setting is a user's error)
    ("stores", "data", "stream"),  # where models are kept; CSV files; streaming without Kafka
    ("archive", "kafka"),  # the Parquet archive (a sink, and its reader); Kafka I/O
    ("review",),  # review in MLflow: the sink, verdicts, feedback from them, tuning
    ("service",),  # the running service: its sinks include the archive and review
    ("jobs",),  # what the CLI and the DAG tasks call: train, detect, SKAB, retrain, gate
    ("dev",),  # embedded broker, simulator, replay, demo (trains with a job)
    ("cli",),  # the command line: parses flags, calls the rest
]
ROW = {part: row for row, parts in enumerate(LAYERS) for part in parts}


def part_of(relative: Path) -> str:
    """The part of ``pipeline`` a module belongs to: ``pipeline/jobs/gate.py`` → ``jobs``,
    ``pipeline/stores.py`` → ``stores``."""
    return relative.parts[1].removesuffix(".py")


def test_every_part_of_pipeline_has_its_row() -> None:
    on_disk = {
        part_of(path.relative_to(ROOT))
        for path in (ROOT / "pipeline").iterdir()
        if path.suffix == ".py" or (path / "__init__.py").exists()
    } - {"__init__"}
    assert on_disk == set(ROW), (
        "a part of pipeline/ is missing from LAYERS, or LAYERS names one gone"
    )


def layering_violations(root: Path) -> list[str]:
    """Imports among pipeline's parts that do not point up ``LAYERS``, as ``file:line`` lines."""
    wrong = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        relative = path.relative_to(root)
        source = part_of(relative)
        for module, line, for_type_checkers in imports_of(path):
            parts = module.split(".")
            if parts[1] != "pipeline" or len(parts) < 3 or for_type_checkers:
                continue
            target = parts[2]
            if target != source and not ROW[target] < ROW[source]:
                wrong.append(f"{relative}:{line} ({source}) imports {module} ({target})")
    return wrong


def test_pipeline_parts_import_only_parts_below_them() -> None:
    wrong = layering_violations(ROOT)
    assert not wrong, "imports against the order of LAYERS:\n" + "\n".join(wrong)


def test_an_import_against_the_order_is_found(tmp_path: Path) -> None:
    """The check itself: a job importing the simulator (``dev`` sits above ``jobs``), even inside a
    function, is one violation; the same import for type checkers only is none."""
    for part in ROW:
        (tmp_path / "pipeline" / part).mkdir(parents=True)
    job = tmp_path / "pipeline" / "jobs" / "train.py"
    job.write_text("def series():\n    from sensorwatch.pipeline.dev.simulator import Simulator\n")
    assert layering_violations(tmp_path) == [
        "pipeline/jobs/train.py:2 (jobs) imports sensorwatch.pipeline.dev.simulator (dev)"
    ]
    job.write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from sensorwatch.pipeline.dev.simulator import Simulator\n"
    )
    assert layering_violations(tmp_path) == []
    (tmp_path / "pipeline" / "stream" / "step.py").write_text(
        "from sensorwatch.pipeline.kafka.source import Polled\n"
    )
    assert layering_violations(tmp_path) == [
        "pipeline/stream/step.py:1 (stream) imports sensorwatch.pipeline.kafka.source (kafka)"
    ]


def architecture_tree(text: str) -> set[str]:
    """The paths the tree in ARCHITECTURE.md names: its first code block, one entry a line (a
    name, or names separated by ", ", then a description), nested by indentation; folders end in
    ``/``. A line whose first column is not made of such names continues a description."""
    tree = text.split("```")[1]
    named: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indentation, folder) of the entries above
    for line in tree.splitlines():
        first = re.split(r"\s{2,}", line.strip())[0]
        names = first.split(", ")
        if not first or not all(re.fullmatch(r"[\w/]+(\.py|/)", n) for n in names):
            continue
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        prefix = "".join(folder for _, folder in folders)
        for name in names:  # ``data/csvfiles.py`` names its folder too
            path = prefix + name
            named.update(path[: i + 1] for i, c in enumerate(path) if c == "/")
            named.add(path)
        if len(names) == 1 and names[0].endswith("/"):
            folders.append((indent, names[0]))
    return named


def test_architecture_names_every_module() -> None:
    """ARCHITECTURE.md lists every module of schemas/, models/ and pipeline/ (a package's
    ``__init__.py`` by its folder), and no module that is gone."""
    named = architecture_tree((ROOT / "ARCHITECTURE.md").read_text())
    modules = {
        path.relative_to(ROOT).as_posix() for top in ALLOWED for path in (ROOT / top).rglob("*.py")
    }
    wanted = {m.removesuffix("__init__.py") if m.endswith("/__init__.py") else m for m in modules}
    assert sorted(wanted - named) == [], "modules ARCHITECTURE.md does not name"
    gone = {n for n in named if n.endswith(".py") and n.split("/")[0] in ALLOWED} - modules
    assert sorted(gone) == [], "modules ARCHITECTURE.md names that are not there"


def test_the_architecture_tree_is_read_as_written() -> None:
    text = """```
pipeline/                the streaming side
  settings.py            the one Settings object
  stream/                stream processing
    step.py, state.py    the batch step and
                         state as bytes, continued
  data/csvfiles.py       sensor CSV files
dags/                    Airflow
```"""
    assert architecture_tree(text) == {
        "pipeline/",
        "pipeline/settings.py",
        "pipeline/stream/",
        "pipeline/stream/step.py",
        "pipeline/stream/state.py",
        "pipeline/data/",
        "pipeline/data/csvfiles.py",
        "dags/",
    }
