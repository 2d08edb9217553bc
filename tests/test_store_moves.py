"""The embedded store copied elsewhere: MLflow recorded its artifact folder as an absolute path,
so the copy is refused in one line naming both folders, and nothing is written into the original."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import sensorwatch_cli

pytestmark = pytest.mark.integration


def sensorwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command in ``cwd`` on the embedded default store (no SENSORWATCH_* from outside)."""
    return sensorwatch_cli(*args, cwd=cwd, outside_settings=False)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_copied_embedded_store_is_refused_and_the_original_left_alone(champion, tmp_path) -> None:
    from sensorwatch.models.mlflow_store import Store
    from sensorwatch.models.register import log_training

    # The default store as `sensorwatch train --promote` makes it in a project folder (the
    # absolute form of the same paths: what MLflow records either way).
    original = tmp_path / "project"
    state = original / ".sensorwatch"
    state.mkdir(parents=True)
    store = Store(
        f"sqlite:///{state}/mlflow.db",
        model_name="sensorwatch-lstm-ae",
        artifact_root=str(state / "artifacts"),
        create=True,
    )
    log_training(champion.trained, store, alias="champion")
    copy = tmp_path / "elsewhere" / "project"
    shutil.copytree(original, copy)
    before = snapshot(original)

    done = sensorwatch("promote", "1", "--reason", "from the copy", cwd=copy)
    assert "Traceback" not in done.stderr and done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the MLflow store ")
    assert f"records its artifacts in {state / 'artifacts'}," in lines[0]
    assert f"not in {copy / '.sensorwatch' / 'artifacts'}:" in lines[0]
    assert snapshot(original) == before  # nothing landed in the original's folder

    # In its own folder the store is used as ever.
    done = sensorwatch("promote", "1", "--reason", "where it was made", cwd=original)
    assert done.returncode == 0, done.stderr
    assert "version 1 is now @champion" in done.stdout
