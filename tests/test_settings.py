"""One configuration tree: what other parts need is a view of the settings, never a copy with
defaults of its own; a ``SENSORWATCH_*`` variable that names no setting is an error."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from sensorwatch.models.alarms import AlarmRules
from sensorwatch.models.presets import PRESETS
from sensorwatch.models.recipe import RECIPE_FIELDS, Recipe
from sensorwatch.pipeline.settings import KAFKA_SECURITY, Settings, UnknownSettingError
from sensorwatch.schemas.readings import parse_reading
from sensorwatch.schemas.records import Reading, Rejected

REPOSITORY = Path(__file__).resolve().parent.parent


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """The command line's entry point in this process: its exit status and its standard error."""
    from sensorwatch.pipeline.cli.app import main

    monkeypatch.setattr(sys, "argv", ["sensorwatch", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("SENSORWATCH_WINDOWS", "SENSORWATCH_WINDOW"),
        ("SENSORWATCH_BOOTSTRAP_SERVER", "SENSORWATCH_BOOTSTRAP_SERVERS"),
        ("sensorwatch_min_window", "SENSORWATCH_MIN_WINDOWS"),
    ],
)
def test_a_mistyped_variable_in_the_environment_names_the_closest_setting(
    typo: str,
    closest: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(typo, "3")
    with pytest.raises(UnknownSettingError, match=f"did you mean {closest}\\?"):
        Settings()
    status, err = run_cli(monkeypatch, capsys, "train")
    assert status == 2
    assert err.strip().splitlines() == [
        f"error: {typo.upper()}: not a setting; did you mean {closest}?"
    ]


def test_a_mistyped_key_in_dotenv_is_named_with_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    # A shared .env may hold other programs' variables: only the prefixed ones are checked.
    (tmp_path / ".env").write_text(
        "POSTGRES_PASSWORD=secret\nSENSORWATCH_SEED=11\nSENSORWATCH_SUPRESS_WINDOWS=5\n"
    )
    with pytest.raises(UnknownSettingError) as error:
        Settings()
    assert str(error.value) == (
        "SENSORWATCH_SUPRESS_WINDOWS in .env: not a setting; did you mean "
        "SENSORWATCH_SUPPRESS_WINDOWS?"
    )
    status, err = run_cli(monkeypatch, capsys, "train")
    assert status == 2 and err.strip().splitlines() == [f"error: {error.value}"]
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=secret\nSENSORWATCH_SEED=11\n")
    assert Settings().seed == 11


def test_a_variable_like_no_setting_at_all_points_to_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENSORWATCH_ZQXJ", "1")
    with pytest.raises(UnknownSettingError, match="SENSORWATCH_ZQXJ: not a setting; see"):
        Settings(_env_file=None)


def test_prefixed_variables_that_are_not_settings_are_allowed_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENSORWATCH_SCREENSHOTS", "shots")  # the browser tests' folder
    monkeypatch.setenv("SENSORWATCH_SEED", "5")
    assert Settings(_env_file=None).seed == 5


def test_alarm_rules_are_the_recipes_values_with_no_defaults_of_their_own() -> None:
    names = [f.name for f in dataclasses.fields(AlarmRules)]
    assert set(names) <= RECIPE_FIELDS
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(AlarmRules))
    with pytest.raises(TypeError):
        AlarmRules()  # type: ignore[call-arg]
    for name, recipe in PRESETS.items():
        rules = recipe.alarm_rules()
        assert rules == AlarmRules.of(recipe), name
        assert {n: getattr(rules, n) for n in names} == {n: getattr(recipe, n) for n in names}
    # The recipe's defaults are the rules': 10 windows to open, 3 bridged, 30 suppressed.
    rules = Recipe().alarm_rules()
    assert (rules.min_windows, rules.merge_windows, rules.suppress_windows) == (10, 3, 30)
    # A setting reaches the rules through the recipe.
    assert Settings(_env_file=None, min_windows=4).recipe().alarm_rules().min_windows == 4


def test_the_parser_enforces_the_settings_limits() -> None:
    limits = Settings(_env_file=None, max_message_bytes=300, max_future_s=1.5).limits()
    now = 1_700_000_000_000

    def message(ts: int, pad: int = 0) -> bytes:
        return b'{"asset_id": "p%s", "ts": %d, "values": {"a": 1}}' % (b"x" * pad, ts)

    assert isinstance(parse_reading(message(now + 1_000), limits=limits, now_ms=now), Reading)
    ahead = parse_reading(message(now + 2_000), limits=limits, now_ms=now)
    assert isinstance(ahead, Rejected) and "in the future" in ahead.reason
    big = parse_reading(message(now, pad=300), limits=limits, now_ms=now)
    assert isinstance(big, Rejected) and big.reason.endswith(" bytes > 300")


def test_one_security_table_gives_both_kafka_clients_their_names(tmp_path: Path) -> None:
    pem = tmp_path / "any.pem"
    pem.write_text("not read here")
    secure = Settings(
        _env_file=None,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=pem,
        ssl_certfile=pem,
        ssl_keyfile=pem,
        ssl_password=SecretStr("k3y"),
        ssl_check_hostname=False,
    )
    assert secure.kafka_security() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "s3cret",
        "ssl_check_hostname": False,
        "ssl_cafile": str(pem),
        "ssl_certfile": str(pem),
        "ssl_keyfile": str(pem),
        "ssl_password": "k3y",
    }
    assert secure.kafka_security("librdkafka") == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "none",
        "ssl.ca.location": str(pem),
        "ssl.certificate.location": str(pem),
        "ssl.key.location": str(pem),
        "ssl.key.password": "k3y",
    }
    assert set(KAFKA_SECURITY) <= set(Settings.model_fields)
    # SASL settings stay out without SASL, TLS ones without TLS.
    sasl_only = Settings(
        _env_file=None,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="bob",
        sasl_password=SecretStr("pw"),
        ssl_cafile=pem,
    )
    assert sorted(sasl_only.kafka_security("librdkafka")) == [
        "sasl.mechanism",
        "sasl.password",
        "sasl.username",
        "security.protocol",
    ]


def test_train_options_come_from_the_settings() -> None:
    options = Settings(_env_file=None, seed=3, mixed_precision=True).train_options(progress=False)
    assert (options.seed, options.mixed_precision, options.progress) == (3, True, False)


def test_only_the_settings_and_library_env_touch_the_process_environment() -> None:
    """No module reads SENSORWATCH_* variables but the settings, and the libraries' own process
    variables are set in one module."""
    allowed = {Path("pipeline/settings.py"), Path("models/library_env.py")}
    touching = sorted(
        str(path.relative_to(REPOSITORY))
        for folder in ("schemas", "models", "pipeline", "dags")
        for path in (REPOSITORY / folder).rglob("*.py")
        if path.relative_to(REPOSITORY) not in allowed
        and re.search(r"os\.environ|getenv\(|putenv\(", path.read_text())
    )
    assert touching == []
