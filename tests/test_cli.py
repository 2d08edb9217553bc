"""The command line: bad options and unreadable files give one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import sensorwatch_cli

# Each test runs the command as a user would, in a process of its own (about 2 s each): outside
# the in-memory tier of `make test-quick`.
pytestmark = pytest.mark.integration


cli = sensorwatch_cli


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints, after checking it is all it printed and it exited 2."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


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
        # reset: one of the two targets, an ISO time, a group that makes a topic name
        (
            ("reset", "--group", "g", "-b", "127.0.0.1:9"),
            "give one of --to-earliest and --to-datetime",
        ),
        (
            ("reset", "--group", "g", "--to-datetime", "yesterday", "-b", "127.0.0.1:9"),
            "to-datetime: not an ISO date or time",
        ),
        (
            ("reset", "--group", "plant 2", "--to-earliest", "-b", "127.0.0.1:9"),
            "the state changelog 'plant 2.sensor-readings.state' is no legal Kafka topic name",
        ),
        (
            ("detect", "x.csv", "--out", "o.csv", "--min-windows", "0"),
            "min-windows: Input should be greater than or equal to 1",
        ),
        (
            ("detect", "x.csv", "--out", "o.csv", "--threshold-params", "{factor"),
            "threshold-params: not JSON",
        ),
        (("train", "--preset", "fastest"), "unknown preset 'fastest'; choose from default"),
        (("evaluate", "skab", "--out", "o", "--score", "median"), "score: Input should be"),
        (("evaluate", "smd", "--out", "o", "--data", "nosuch"), "no SMD data at nosuch"),
        (("detect", "nosuch.csv", "--out", "o.csv"), "nosuch.csv: no such file"),
        # threshold parameters the method does not take: refused before any training
        (
            ("train", "--threshold-params", '{"nosuch": 1}'),
            "threshold-params: reference takes quantile, factor, follow, smooth; not nosuch",
        ),
        (
            ("train", "--threshold", "reference", "--threshold-params", '{"k": 3}'),
            "reference takes quantile, factor, follow, smooth; not k",
        ),
        (
            ("train", "--threshold-params", '{"factor": 2.0, "follow": -1}'),
            "threshold-params: reference takes follow ≥ 0 (windows; 0 = off)",
        ),
        (
            ("detect", "x.csv", "--out", "o.csv", "--threshold-params", '{"quantile": 99}'),
            "threshold-params: reference takes 0 < quantile ≤ 1 and factor > 0",
        ),
        (
            (
                "detect",
                "x.csv",
                "--out",
                "o.csv",
                "--threshold",
                "spot",
                "--threshold-params",
                '{"k": 3}',
            ),
            "threshold-params: spot takes q, level, depth, max_peaks, smooth; not k",
        ),
        (
            (
                "evaluate",
                "skab",
                "--out",
                "o",
                "--threshold",
                "zscore",
                "--threshold-params",
                '{"factor": 2.0}',
            ),
            "threshold-params: zscore takes k, smooth; not factor",
        ),
        (
            ("serve", "-b", "127.0.0.1:9", "--threshold-params", '{"k": 3}'),
            "reference takes quantile, factor, follow, smooth; not k",
        ),
        (
            ("train", "--threshold", "median"),
            "threshold: Input should be 'reference', 'zscore', 'spot', 'dynamic' or 'likelihood'",
        ),
        # a directory where a file is expected ({tmp} is the test's folder)
        (("detect", "{tmp}", "--out", "x.csv"), "{tmp}: is a directory, not a CSV file"),
        (("replay", "{tmp}", "-b", "127.0.0.1:9"), "{tmp}: is a directory, not a CSV file"),
        (("train", "{tmp}"), "{tmp}: is a directory, not a CSV file"),
        (
            ("detect", "x.csv", "--out", "{tmp}"),
            "{tmp}: is a directory; --out takes the name of the CSV file to write",
        ),
        (("replay", "x.csv", "--time-unit", "h"), "Invalid value for '--time-unit'"),
        # a zone for naive local times that is no IANA zone
        (
            ("detect", "x.csv", "--out", "o.csv", "--timezone", "Europe/Berlln"),
            "error: timezone: no time zone 'Europe/Berlln' (give an IANA name such as Europe/Berlin or UTC)",
        ),
        (("replay", "x.csv", "-b", "127.0.0.1:9", "--timezone", "+02:00"), "no time zone '+02:00'"),
        # a malformed bootstrap server list: refused as a setting, not waited out as a broker
        (("serve", "-b", "not a host"), "bootstrap-servers: 'not a host' is not host:port"),
        (("simulate", "-b", "kafka:0"), "bootstrap-servers: 'kafka:0' is not host:port"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    line = one_error_line(cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), cwd=tmp_path))
    assert says.replace("{tmp}", str(tmp_path)) in line


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"SENSORWATCH_THRESHOLD_PARAMS": "{bad"},
            "error: SENSORWATCH_THRESHOLD_PARAMS: not JSON (Expecting property name enclosed in double quotes): '{bad'",
        ),
        (
            {"SENSORWATCH_WINDOW": "abc"},
            "error: SENSORWATCH_WINDOW: Input should be a valid integer, "
            "unable to parse string as an integer (it holds 'abc')",
        ),
        (
            {"SENSORWATCH_THRESHOLD_PARAMS": '{"k": "x"}'},
            "error: SENSORWATCH_THRESHOLD_PARAMS: k: Input should be a valid number",
        ),
        (
            {"SENSORWATCH_THRESHOLD_PARAMS": '{"k": 3}'},
            "error: threshold-params: reference takes quantile, factor, follow, smooth; not k",
        ),
        (
            {"SENSORWATCH_PRESET": "fastest"},
            "error: SENSORWATCH_PRESET: unknown preset 'fastest'; choose from default",
        ),
        (
            {"SENSORWATCH_WINDOWS": "30"},
            "error: SENSORWATCH_WINDOWS: not a setting; did you mean SENSORWATCH_WINDOW?",
        ),
    ],
)
def test_bad_settings_in_the_environment_are_one_line_naming_the_variable(
    env: dict[str, str], says: str, tmp_path: Path
) -> None:
    assert one_error_line(cli("train", cwd=tmp_path, env=env)).startswith(says)


def test_a_malformed_bootstrap_server_in_the_environment_names_the_variable(
    tmp_path: Path,
) -> None:
    line = one_error_line(
        cli("serve", cwd=tmp_path, env={"SENSORWATCH_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka 2"})
    )
    assert line.startswith("error: SENSORWATCH_BOOTSTRAP_SERVERS: 'kafka 2' is not host:port")


def test_a_flag_names_itself_even_when_the_environment_has_the_setting(tmp_path: Path) -> None:
    line = one_error_line(
        cli("train", "--window", "1", cwd=tmp_path, env={"SENSORWATCH_WINDOW": "30"})
    )
    assert line == "error: window: Input should be greater than or equal to 2"


@pytest.mark.parametrize("command", [(), ("evaluate",)])
def test_a_bare_command_shows_its_help_and_exits_0(command: tuple[str, ...]) -> None:
    done = cli(*command)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "Commands" in done.stdout
    assert done.stderr == ""


def _csv(path: Path, times: list[object]) -> Path:
    path.write_text("ts,value\n" + "".join(f"{t},{i % 7}\n" for i, t in enumerate(times)))
    return path


@pytest.mark.parametrize(
    "command", [("train",), ("detect", "--out", "o.csv"), ("replay", "-b", "127.0.0.1:9")]
)
def test_numeric_times_of_no_clear_unit_ask_for_it(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    data = _csv(tmp_path / "relative.csv", list(range(30)))
    line = one_error_line(cli(command[0], str(data), *command[1:], cwd=tmp_path))
    assert line == (
        f"error: {data}: cannot tell the unit of the numbers in 'ts' (0 to 29 are not epoch times of 1973-2100 "
        "in any one unit): declare it (--time-unit s|ms|us|ns)"
    )


def test_a_declared_time_unit_reaches_the_reader(tmp_path: Path) -> None:
    # Relative times read as ms: the file is read, and then is too short for a window (no training).
    data = _csv(tmp_path / "relative.csv", list(range(10)))
    line = one_error_line(cli("train", str(data), "--time-unit", "ms", cwd=tmp_path))
    assert (
        line
        == f"error: {data}: too little data: no stretch of 20 readings for one window; the longest without a gap has 10"
    )


def test_a_file_too_short_for_one_window_is_one_line(tmp_path: Path) -> None:
    data = _csv(
        tmp_path / "short.csv", [1_600_000_000.5 + i for i in range(10)]
    )  # fractional epoch seconds
    line = one_error_line(cli("train", str(data), cwd=tmp_path))
    assert (
        line
        == f"error: {data}: too little data: no stretch of 20 readings for one window; the longest without a gap has 10"
    )
    # A file shorter than twice the default training rows trains on its first half.
    line = one_error_line(cli("detect", str(data), "--out", "o.csv", cwd=tmp_path))
    assert line == f"error: {data}: 5 training rows are fewer than one window of 20"
    told = cli("detect", str(data), "--out", "o.csv", "--train-rows", "10", cwd=tmp_path)
    assert one_error_line(told) == (
        f"error: {data}: --train-rows must be between 1 and 9 (the file has 10 rows)"
    )


def test_strict_refuses_repeated_and_backward_times(tmp_path: Path) -> None:
    twice = _csv(
        tmp_path / "twice.csv", [1_600_000_000, 1_600_000_001, 1_600_000_001, 1_600_000_002]
    )
    line = one_error_line(cli("detect", str(twice), "--out", "o.csv", "--strict", cwd=tmp_path))
    assert line == (
        f"error: {twice}: row 4 (1600000001) repeats an earlier time (1 row repeated, 0 out of order; "
        "--strict refuses them, without it they are kept once and sorted)"
    )
    back = _csv(tmp_path / "back.csv", [1_600_000_000, 1_600_000_002, 1_600_000_001])
    line = one_error_line(cli("replay", str(back), "-b", "127.0.0.1:9", "--strict", cwd=tmp_path))
    assert line == (
        f"error: {back}: row 4 (1600000001) goes back in time (after 1600000002) (0 rows repeated, "
        "1 out of order; --strict refuses them, without it they are kept once and sorted)"
    )


def test_unreadable_csv_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime;a;b\n2020-01-01 00:00:00;1;x\n")
    line = one_error_line(cli("replay", str(bad), "-b", "127.0.0.1:9", "--strict", cwd=tmp_path))
    assert line.startswith(f"error: {bad}: column 'b' is not numeric (--strict refuses it;")


def test_help_lists_the_jobs() -> None:
    done = cli("--help")
    assert done.returncode == 0
    for command in (
        "broker",
        "simulate",
        "replay",
        "train",
        "serve",
        "demo",
        "detect",
        "evaluate",
        "reset",
    ):
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


DEEP_LEARNING = {"keras", "tensorflow", "jax", "torch"}


def cli_watching_imports(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``cli(*args)``, and which deep-learning libraries the process had imported when it exited
    (printed on stdout at exit, after the command's own output)."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('imported:', *sorted("
        f"{{m.split('.')[0] for m in sys.modules}} & set({sorted(DEEP_LEARNING)!r}))))\n"
        f"sys.argv = ['sensorwatch', *{list(args)!r}]\n"
        "from sensorwatch.pipeline.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    assert "imported:" in done.stdout, done.stdout + done.stderr
    return done, set(done.stdout.rsplit("imported:", 1)[1].split())


def test_serve_fails_on_an_unreachable_broker_before_it_loads_the_model(tmp_path: Path) -> None:
    """The broker is looked at before the champion: with no broker and an empty model store, the
    one error is the broker's (loading first would have failed on the missing champion), and
    TensorFlow was never imported."""
    from sensorwatch.pipeline.dev.tansu import free_port

    port = free_port()
    done, imported = cli_watching_imports(
        "serve",
        "-b",
        f"127.0.0.1:{port}",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/empty.db",
        cwd=tmp_path,
        env={"SENSORWATCH_BROKER_TIMEOUT_S": "0.1"},  # no retry, so no retry warning either
    )
    line = one_error_line(done)
    assert line.startswith(f"error: no Kafka broker reachable at 127.0.0.1:{port}"), line
    assert "connection refused" in line and "champion" not in done.stdout + done.stderr
    assert not imported & DEEP_LEARNING, imported


def test_train_and_detect_check_their_input_before_importing_keras(tmp_path: Path) -> None:
    short = _csv(tmp_path / "short.csv", [1_600_000_000 + i for i in range(10)])
    fine = _csv(tmp_path / "fine.csv", [1_600_000_000 + i for i in range(100)])
    gappy = _csv(  # 30 training rows, a gap every 10: no stretch holds one window of 20
        tmp_path / "gappy.csv",
        [1_600_000_000 + i + 3600 * (i // 10) for i in range(30)]
        + [1_700_000_000 + i for i in range(70)],
    )
    cases = [
        (("train", str(short)), "too little data: no stretch of 20 readings for one window"),
        (("train", str(tmp_path / "nosuch.csv")), "nosuch.csv: no such file"),
        (
            ("detect", str(short), "--out", "o.csv", "--train-rows", "10"),
            "--train-rows must be between 1 and 9",
        ),
        (
            ("detect", str(fine), "--out", "o.csv", "--train-rows", "10"),
            "10 training rows are fewer than one window of 20",
        ),
        (
            ("detect", str(gappy), "--out", "o.csv", "--train-rows", "30"),
            "too little data: no stretch of 20 readings for one window",
        ),
        (("train", str(fine), "--time-unit", "h"), "Invalid value for '--time-unit'"),
    ]
    for args, says in cases:
        done, imported = cli_watching_imports(*args, cwd=tmp_path)
        assert says in one_error_line(done), (args, done.stderr)
        assert not imported & DEEP_LEARNING, (args, imported)
