"""The command line: bad options and unreadable files give one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("simulate", "--assets", "0"), "--assets"),
        (("train", "--window", "1"), "window: Input should be greater than or equal to 2"),
        (("replay", "nosuch.csv", "-b", "127.0.0.1:9"), "nosuch.csv: no such file"),
        (("replay",), "Missing argument"),
        (("nosuchcommand",), "No such command"),
        (("simulate",), "no Kafka to talk to"),
        (("serve",), "no Kafka to talk to"),
        (("detect", "x.csv", "--out", "o.csv", "--min-windows", "0"), "min-windows: Input should be greater than or equal to 1"),
        (("detect", "x.csv", "--out", "o.csv", "--threshold-params", "{factor"), "threshold-params: not JSON"),
        (("train", "--preset", "fastest"), "unknown preset 'fastest'; choose from default"),
        (("evaluate", "skab", "--out", "o", "--score", "median"), "score: Input should be"),
        (("detect", "nosuch.csv", "--out", "o.csv"), "nosuch.csv: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert says in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_unreadable_csv_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime;a;b\n2020-01-01 00:00:00;1;x\n")
    done = cli("replay", str(bad), "-b", "127.0.0.1:9", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {bad}: column 'b' is not numeric"


def test_help_lists_the_jobs() -> None:
    done = cli("--help")
    assert done.returncode == 0
    for command in ("broker", "simulate", "replay", "train", "serve", "demo", "detect", "evaluate"):
        assert command in done.stdout


@pytest.mark.parametrize("command", [("train",), ("serve",), ("detect",), ("evaluate", "skab")])
def test_the_jobs_take_the_same_recipe_options(command: tuple[str, ...]) -> None:
    from sensorwatch.models.recipe import RECIPE_FIELDS

    done = cli(*command, "--help")
    assert done.returncode == 0
    for name in RECIPE_FIELDS | {"preset"}:
        assert f"--{name.replace('_', '-')}" in done.stdout, f"{' '.join(command)} lacks --{name}"


def test_the_readme_documents_every_setting() -> None:
    from sensorwatch.pipeline.settings import Settings

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`SENSORWATCH_{n.upper()}`" not in readme]
    assert not missing, f"README lacks {missing}"
