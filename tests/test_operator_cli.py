"""What an operator asks of the command line: its version, the effective settings (secrets
masked), and log records a log shipper can read (``--log-format json``)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from sensorwatch.pipeline.cli.jsonlog import JsonFormatter
from sensorwatch.pipeline.settings import Settings

SENSORWATCH = Path(sys.executable).parent / "sensorwatch"  # the installed console script
SASL = {
    "SENSORWATCH_SECURITY_PROTOCOL": "SASL_SSL",
    "SENSORWATCH_SASL_MECHANISM": "SCRAM-SHA-512",
    "SENSORWATCH_SASL_USERNAME": "scorer",
    "SENSORWATCH_SASL_PASSWORD": "sasl-secret-1",
    "SENSORWATCH_TRACKING_URI": "postgresql://mlflow:pg-secret-2@db:5432/mlflow",
    "SENSORWATCH_BOOTSTRAP_SERVERS": "scorer:kafka-secret-3@kafka-1:9092,kafka-2:9092",
}
SECRETS = ("sasl-secret-1", "pg-secret-2", "kafka-secret-3")
LINE = re.compile(
    r"^(?P<name>\w+) = (?P<value>.*?)\s+# (?P<env>SENSORWATCH_\w+) \((?P<source>[^)]+)\)$"
)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any SENSORWATCH_ setting, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SENSORWATCH_")}, **extra}


def sensorwatch(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SENSORWATCH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=environment(**env),
    )


def shown(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    """The text listing of ``sensorwatch settings``: name → value, variable, source."""
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        found = LINE.match(line)
        assert found, line
        rows[found["name"]] = {
            "value": found["value"],
            "env": found["env"],
            "source": found["source"],
        }
    return rows


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    done = sensorwatch("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"sensorwatch {version('sensorwatch')}\n"
    assert done.stderr == ""


def test_version_loads_no_deep_learning_stack() -> None:
    probe = (
        "import sys\nfrom sensorwatch.pipeline.cli import main\nsys.argv = ['sensorwatch', '--version']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "sensorwatch" in loaded and not loaded & {"keras", "tensorflow", "jax", "torch"}


@pytest.mark.parametrize("output", ["text", "env", "json"])
def test_settings_never_show_a_secret(output: str, tmp_path: Path) -> None:
    done = sensorwatch("settings", "--format", output, cwd=tmp_path, **SASL)
    assert done.returncode == 0, done.stderr
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr
    assert "postgresql://mlflow:**********@db:5432/mlflow" in done.stdout
    assert "scorer:**********@kafka-1:9092,kafka-2:9092" in done.stdout
    if output == "text":
        rows = shown(done)
        assert rows["sasl_password"]["value"] == "**********"
        assert rows["sasl_username"]["value"] == "scorer"  # not a secret
    if output == "json":
        assert json.loads(done.stdout)["sasl_password"] == "**********"


def test_settings_list_every_field_with_its_variable_and_source(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SENSORWATCH_SEED=11\nSENSORWATCH_GROUP_ID=from-dotenv\n")
    done = sensorwatch(
        "settings",
        "--window",
        "30",
        "-b",
        "kafka:9092",
        cwd=tmp_path,
        SENSORWATCH_MAX_POLL_RECORDS="10",
        SENSORWATCH_WINDOW="40",
        SENSORWATCH_GROUP_ID="from-env",
    )
    rows = shown(done)
    assert set(rows) == set(Settings.model_fields)
    assert all(row["env"] == f"SENSORWATCH_{name.upper()}" for name, row in rows.items())
    assert rows["window"] == {
        "value": "30",
        "env": "SENSORWATCH_WINDOW",
        "source": "flag",
    }  # the flag beats the variable
    assert (
        rows["bootstrap_servers"]["value"] == "kafka:9092"
        and rows["bootstrap_servers"]["source"] == "flag"
    )
    assert (rows["max_poll_records"]["value"], rows["max_poll_records"]["source"]) == (
        "10",
        "environment",
    )
    assert (rows["group_id"]["value"], rows["group_id"]["source"]) == (
        "from-env",
        "environment",
    )  # beats .env
    assert (rows["seed"]["value"], rows["seed"]["source"]) == ("11", ".env")
    assert (rows["dlq_topic"]["value"], rows["dlq_topic"]["source"]) == (
        "sensor-readings.dlq",
        "default",
    )
    assert rows["sasl_password"]["value"] == "(not set)"


def test_settings_show_the_recipe_the_preset_makes(tmp_path: Path) -> None:
    rows = shown(sensorwatch("settings", "--preset", "plant", "--units", "8", cwd=tmp_path))
    assert (rows["preset"]["value"], rows["preset"]["source"]) == ("plant", "flag")
    assert (rows["window"]["value"], rows["window"]["source"]) == ("30", "preset plant")
    assert (rows["units"]["value"], rows["units"]["source"]) == ("8", "flag")
    assert json.loads(rows["threshold_params"]["value"]) == {
        "quantile": 0.999,
        "factor": 1.0,
        "follow": 2000,
    }


def test_settings_as_json_keep_their_types_and_read_back(tmp_path: Path) -> None:
    from sensorwatch.pipeline.cli.settings_cmd import effective

    done = sensorwatch(
        "settings",
        "--format",
        "json",
        "--threshold-params",
        '{"factor": 2.5}',
        cwd=tmp_path,
        SENSORWATCH_MAX_POLL_RECORDS="10",
        SENSORWATCH_SSL_CHECK_HOSTNAME="false",
        SENSORWATCH_MAX_GAP_S="90",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == set(Settings.model_fields)
    assert data["max_poll_records"] == 10 and data["ssl_check_hostname"] is False
    assert data["max_gap_s"] == 90.0 and data["grace_s"] is None
    assert data["threshold_params"] == {"factor": 2.5} and data["broker_timeout_s"] == 60.0
    assert effective(Settings(_env_file=None, **data)) == data


def test_settings_as_env_lines_make_a_dotenv_that_reads_back(tmp_path: Path) -> None:
    tricky = {
        "SENSORWATCH_EXPERIMENT": 'line #4 it\'s "quoted" ',
        "SENSORWATCH_THRESHOLD_PARAMS": '{"quantile": 0.98}',
        "SENSORWATCH_ARCHIVE_URI": "",
        "SENSORWATCH_PRESET": "published",
    }
    before = sensorwatch("settings", "--format", "json", cwd=tmp_path, **tricky)
    lines = sensorwatch("settings", "--format", "env", cwd=tmp_path, **tricky)
    assert lines.returncode == 0, lines.stderr
    assert "# SENSORWATCH_SASL_PASSWORD is not set" in lines.stdout.splitlines()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text(lines.stdout)
    after = sensorwatch("settings", "--format", "json", cwd=elsewhere)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)["experiment"] == tricky["SENSORWATCH_EXPERIMENT"]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            (),
            {"SENSORWATCH_MAX_POLL_RECORDS": "0"},
            "error: SENSORWATCH_MAX_POLL_RECORDS: Input should be greater than or equal to 1 (it holds '0')",
        ),
        (
            (),
            {"SENSORWATCH_LOG_FORMAT": "xml"},
            "error: SENSORWATCH_LOG_FORMAT: Input should be 'text' or 'json' (it holds 'xml')",
        ),
        (("--window", "1"), {}, "error: window: Input should be greater than or equal to 2"),
        (("--format", "yaml"), {}, "error: Invalid value for '--format'"),
        (("--log-format", "xml"), {}, "error: Invalid value for '--log-format'"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    done = sensorwatch("settings", *args, cwd=tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), done.stderr


def test_every_command_takes_log_format() -> None:
    import typer

    from sensorwatch.pipeline.cli import app

    def commands(group: Any, path: str) -> list[tuple[str, Any]]:
        found = []
        for name, command in group.commands.items():
            found += (
                commands(command, f"{path} {name}")
                if hasattr(command, "commands")
                else [(f"{path} {name}", command)]
            )
        return found

    every = commands(typer.main.get_command(app), "sensorwatch")
    assert {
        "sensorwatch serve",
        "sensorwatch evaluate skab",
        "sensorwatch review tune",
        "sensorwatch settings",
    } <= dict(every).keys()
    lacking = [
        name
        for name, command in every
        if "--log-format" not in {o for p in command.params for o in p.opts}
    ]
    assert not lacking


def record(**fields: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sensorwatch.test.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.error("checkpoint failed partition=%d", 3, exc_info=True, extra=fields)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1  # the traceback too stays on the one line
    return json.loads(text)


def test_a_json_record_holds_time_level_logger_message_exception_and_extra_fields() -> None:
    line = record(asset="pump-01", offset=42, where=Path("/tmp/x"), level="not this one")
    assert line["level"] == "ERROR" and line["logger"] == "sensorwatch.test.jsonlog"
    assert line["message"] == "checkpoint failed partition=3"
    assert "ZeroDivisionError: division by zero" in str(line["exception"]) and "Traceback" in str(
        line["exception"]
    )
    assert (line["asset"], line["offset"], line["where"]) == ("pump-01", 42, "/tmp/x")
    assert datetime.fromisoformat(str(line["time"])).utcoffset().total_seconds() == 0
    assert str(line["time"]).endswith("Z")


def run_broker(tmp_path: Path, *args: str, **env: str) -> str:
    """``sensorwatch broker -v``: started, then stopped by SIGTERM; what it logged (stderr)."""
    proc = subprocess.Popen(
        [str(SENSORWATCH), "broker", "-v", *args],
        cwd=tmp_path,
        env=environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("broker ready")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return err


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "env"),
    [(("--log-format", "json"), {}), ((), {"SENSORWATCH_LOG_FORMAT": "json"})],
    ids=["flag", "environment"],
)
def test_json_logs_are_one_object_per_line(
    args: tuple[str, ...], env: dict[str, str], tmp_path: Path
) -> None:
    lines = run_broker(tmp_path, *args, **env).splitlines()
    records = [json.loads(line) for line in lines]  # every line is an object
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    messages = [r["message"] for r in records]
    assert any(m.startswith("broker started") for m in messages) and any(
        m.startswith("broker stopped") for m in messages
    )
    assert all(datetime.fromisoformat(r["time"]).utcoffset().total_seconds() == 0 for r in records)


@pytest.mark.integration
def test_the_flag_beats_the_variable_and_text_stays_the_default(tmp_path: Path) -> None:
    for err in (
        run_broker(tmp_path),
        run_broker(tmp_path, "--log-format", "text", SENSORWATCH_LOG_FORMAT="json"),
    ):
        lines = err.splitlines()
        assert lines and all(
            re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO sensorwatch", line) for line in lines
        ), err


# serve's JSON logs: tests/test_health.py (the same start checks its endpoints).
