"""One settings object for the whole service: every field documents itself and its variable.

Each field reads ``SENSORWATCH_<NAME>`` from the environment (or a ``.env`` file); CLI flags
override them. Nothing else in the project reads ``SENSORWATCH_*`` variables, and a
``SENSORWATCH_*`` variable that names no setting is an error naming the closest one (a typo is
never silently ignored). The detector recipe's fields (``sensorwatch.models.recipe.Recipe``) are
settings too, declared once there: ``recipe()`` is the named preset with every recipe field that
was set explicitly on top.

What other parts need is a view of these fields, never a copy with defaults of its own:
``recipe()`` (and its ``alarm_rules()``), ``limits()`` for the reading parser, ``train_options()``
for a training run, ``kafka_security()`` for either Kafka client (one table, ``KAFKA_SECURITY``).
The deep-learning libraries' own process variables (``TF_*``, ``JAX_*``) are not settings: they
are set in ``sensorwatch.models.library_env``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sensorwatch.models.presets import PRESETS, preset
from sensorwatch.models.recipe import RECIPE_FIELDS, Recipe, TrainOptions
from sensorwatch.pipeline.errors import UserError
from sensorwatch.schemas.readings import Limits

STATE_DIR = Path(".sensorwatch")
ENV_PREFIX = "SENSORWATCH_"
# Variables with the prefix that are not settings, so not mistakes: where the browser tests copy
# their screenshots (tests/test_review_ui.py).
NOT_SETTINGS = frozenset({"SENSORWATCH_SCREENSHOTS"})

# Each security setting under its name in kafka-python and in librdkafka (confluent-kafka). The
# SASL ones apply with a SASL protocol, the SSL ones with an SSL protocol; unset ones are left out.
KAFKA_SECURITY: dict[str, tuple[str, str]] = {
    "security_protocol": ("security_protocol", "security.protocol"),
    "sasl_mechanism": ("sasl_mechanism", "sasl.mechanism"),
    "sasl_username": ("sasl_plain_username", "sasl.username"),
    "sasl_password": ("sasl_plain_password", "sasl.password"),
    "ssl_check_hostname": ("ssl_check_hostname", "ssl.endpoint.identification.algorithm"),
    "ssl_cafile": ("ssl_cafile", "ssl.ca.location"),
    "ssl_certfile": ("ssl_certfile", "ssl.certificate.location"),
    "ssl_keyfile": ("ssl_keyfile", "ssl.key.location"),
    "ssl_password": ("ssl_password", "ssl.key.password"),
}
# Where librdkafka wants another form of the value than kafka-python.
_LIBRDKAFKA_VALUES = {
    "security_protocol": str.lower,
    "ssl_check_hostname": lambda check: "https" if check else "none",
}


class UnknownSettingError(UserError):
    """A ``SENSORWATCH_*`` variable (in the environment or ``.env``) that names no setting."""


class Settings(BaseSettings, Recipe):
    """sensorwatch settings (environment prefix ``SENSORWATCH_``)."""

    # extra="ignore" keeps a shared .env's other variables (POSTGRES_PASSWORD, ...) out; those with
    # the prefix are checked against the fields (settings_customise_sources).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Kafka
    bootstrap_servers: str = Field(
        "",
        description="Kafka bootstrap servers, comma-separated (`sensorwatch broker` starts a local "
        "one).",
    )
    readings_topic: str = Field(
        "sensor-readings", description="Topic the sensor readings arrive on."
    )
    anomalies_topic: str = Field(
        "sensor-anomalies", description="Topic anomaly events are published to."
    )
    dlq_topic: str = Field(
        "sensor-readings.dlq", description="Dead-letter topic for rejected records."
    )
    group_id: str = Field(
        "sensorwatch-scorers", description="Consumer group of the scoring service."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, when the protocol uses SASL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (never written to logs, errors or MLflow)."
    )
    ssl_cafile: Path | None = Field(
        None,
        description="CA certificate (PEM) that signed the brokers' certificates, for SSL and "
        "SASL_SSL.",
    )
    ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM), when the brokers ask clients for one."
    )
    ssl_keyfile: Path | None = Field(
        None, description="Private key (PEM) of the client certificate."
    )
    ssl_password: SecretStr | None = Field(
        None, description="Password of the client's private key, if it has one."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to."
    )
    kafka_client: Literal["kafka-python", "confluent-kafka"] = Field(
        "kafka-python",
        description="Client the service reads readings with: kafka-python, or librdkafka's "
        "confluent-kafka (the `fast` extra: decodes in C, less CPU per record).",
    )
    max_poll_records: int = Field(2000, ge=1, description="Most records one poll returns.")
    poll_timeout_ms: int = Field(500, ge=1, description="How long one poll waits for records.")
    max_poll_interval_ms: int = Field(
        30_000,
        ge=1000,
        description="Kafka's limit between polls before the group evicts a consumer.",
    )
    session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        description="Consumer group session timeout; a group join waits about half of it.",
    )
    max_message_bytes: int = Field(
        65_536, ge=256, description="Larger reading messages are dead-lettered as oversized."
    )
    max_future_s: float = Field(
        300.0,
        gt=0,
        description="Readings stamped further than this ahead of the clock are rejected.",
    )
    broker_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long the service waits out an unreachable broker before it exits "
        "non-zero.",
    )

    commit_interval_s: float = Field(
        5.0,
        ge=0,
        description="How often the service checkpoints: outputs and archive flushed, state "
        "written, offsets committed (0: after every poll).",
    )
    archive_uri: str = Field(
        str(STATE_DIR / "archive"),
        description="Where the service archives what it scored, as Parquet by day: a folder or an "
        "object-store URI such as s3://bucket/path (empty: no archive).",
    )

    # Detector recipe: its fields are declared on Recipe; this picks the named starting point.
    preset: str = Field(
        "default", description=f"Named detector recipe to start from: {', '.join(PRESETS)}."
    )

    # Service
    reload_interval_s: float = Field(
        30.0,
        ge=0,
        description="How often the service checks whether the champion alias moved (0: never).",
    )
    runtime: Literal["onnx", "keras"] = Field(
        "onnx",
        description="How the service scores: the version's exported scoring graph in ONNX Runtime "
        "(no TensorFlow in the process), or the Keras model (needs the train extra).",
    )
    score_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="Intra-op threads of one replica's ONNX Runtime session (one replica a core: 1).",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the operator endpoints: /healthz (alive), /readyz (partitions, model, "
        "broker) and /metrics (Prometheus); 0: off.",
    )
    log_every_s: float = Field(
        60.0,
        gt=0,
        description="Least time between two warnings of the same kind about the same asset.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="How log records are written to standard error: text lines, or json for log "
        "shippers (one object per line).",
    )

    # Models and MLflow
    tracking_uri: str = Field(
        f"sqlite:///{STATE_DIR}/mlflow.db", description="MLflow tracking URI."
    )
    artifact_root: str = Field(
        str(STATE_DIR / "artifacts"), description="Where a local MLflow store keeps artifacts."
    )
    experiment: str = Field("sensorwatch", description="MLflow experiment of the training runs.")
    model_name: str = Field("sensorwatch-lstm-ae", description="Registered model name.")
    model_alias: str = Field(
        "champion", description="Alias the service loads and training promotes."
    )
    mlflow_timeout_s: float = Field(
        10.0, gt=0, description="How long one request to an MLflow tracking server may take."
    )
    mlflow_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="How many times a failed MLflow request is tried again (with backoff).",
    )
    cache_dir: Path = Field(
        STATE_DIR / "champion",
        description="Where the service keeps a checked copy of the last champion it loaded, to "
        "start from when MLflow is out of reach.",
    )
    review_experiment: str = Field(
        "sensorwatch-anomalies",
        description="MLflow experiment the service logs each anomaly to, for review (a run per "
        "alarm).",
    )
    review_buffer: int = Field(
        10_000,
        ge=0,
        description="Most anomaly events held for MLflow while it is slow or down; the oldest are "
        "dropped beyond (0: no review logging).",
    )
    review_drain_s: float = Field(
        15.0,
        ge=0,
        description="How long a stopping service waits for MLflow to take the anomalies it still "
        "holds.",
    )
    review_ui_url: str = Field(
        "",
        description="Address of MLflow's UI for review links (default: the tracking server's, else "
        "http://127.0.0.1:5000).",
    )
    tune_scale_min: float = Field(
        0.5,
        gt=0,
        description="Lowest threshold scale that tuning from reviewed anomalies may choose.",
    )
    tune_scale_max: float = Field(
        3.0,
        gt=0,
        description="Highest threshold scale that tuning from reviewed anomalies may choose.",
    )
    mixed_precision: bool = Field(
        False, description="Train with float16 compute (GPUs with tensor cores)."
    )
    seed: int = Field(7, description="Seed for the simulator and training.")

    # Retraining (dags/)
    retrain_schedule: str = Field(
        "@daily",
        description="When the retraining DAG runs (an Airflow schedule: a preset or cron).",
    )
    retrain_lookback_days: int = Field(
        7,
        ge=2,
        description="Days of archive a retraining uses; the newest is held out to compare champion "
        "and challenger.",
    )
    retrain_leave_out_windows: float = Field(
        20,
        ge=0,
        description="Stretches the service flagged, up to this many window lengths long, leave a "
        "retraining's data unless reviewed as false positives (a fault nobody labelled is not "
        "learnt as normal); longer ones are kept as a change of the process. 0: none leave.",
    )
    promotion_mode: Literal["managed", "manual"] = Field(
        "managed",
        description="managed: the gate moves the champion alias; manual: a new version is only "
        "tagged challenger.",
    )
    promote_margin_false_alarms: float = Field(
        0.5,
        ge=0,
        description="Fewer false alarms per 10,000 readings a challenger needs (at no loss of "
        "recall) to be promoted.",
    )
    promote_margin_recall: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Higher recall a challenger needs (at no more false alarms) to be promoted.",
    )
    labels_path: Path | None = Field(
        None,
        description="CSV of labelled events (asset_id, start_ms, end_ms) the gate counts recall "
        "on, e.g. the simulator's --labels.",
    )
    validation_sigmas: float = Field(
        10.0,
        gt=0,
        description="Training data must stay within the champion's training mean ± this many "
        "standard deviations.",
    )
    validation_max_missing: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Largest share of missing readings (by the learned cadence) training data may "
        "have.",
    )
    validation_min_rows: int = Field(
        200, ge=1, description="Fewest archived readings per asset to train on."
    )
    drift_schedule: str = Field(
        "@hourly", description="When the drift check DAG runs (an Airflow schedule)."
    )
    drift_window_hours: float = Field(
        24.0,
        gt=0,
        description="Recent hours of window scores the drift check compares with training.",
    )
    drift_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="False-alarm rate of one drift check: drift when the recent score blocks are "
        "this unlikely under the champion's validation scores (pipeline/jobs/drift.py).",
    )
    drift_min_windows: int = Field(
        500, ge=1, description="Fewest recent windows the drift check needs to decide."
    )

    # Benchmarks
    skab_dir: Path = Field(
        Path("../shared/datasets/skab"),
        description="The SKAB benchmark data (valve1/, valve2/, other/).",
    )
    smd_dir: Path = Field(
        Path("../shared/datasets/smd"),
        description="The Server Machine Dataset (train/, test/, labels.json).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, servers: str) -> str:
        """``host:port`` entries, comma-separated; empty is no Kafka (a command that needs one
        says so). A malformed one is refused at once, not retried like a broker that is down."""
        for server in (s.strip() for s in servers.split(",") if s.strip()):
            where = server.rpartition("@")[2]  # after a user:password@, which is never shown
            host, _, port = where.rpartition(":")
            if not re.fullmatch(r"[\w.-]+|\[[0-9A-Fa-f:.]+\]", host) or not (
                port.isdigit() and 0 < int(port) < 65536
            ):
                raise ValueError(f"{where!r} is not host:port (e.g. localhost:9092)")
        return servers

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    @model_validator(mode="after")
    def _complete_security(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both or neither")
        if self.tune_scale_min > self.tune_scale_max:
            raise ValueError(
                f"tune_scale_min {self.tune_scale_min:g} is above tune_scale_max {self.tune_scale_max:g}"
            )
        return self

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        preset(name)  # raises with the known names
        return name

    def recipe_overrides(self) -> dict[str, Any]:
        """Recipe fields set on purpose (flags, environment, ``.env``), and a preset chosen explicitly."""
        chosen = preset(self.preset).model_dump() if "preset" in self.model_fields_set else {}
        return {
            **chosen,
            **{f: getattr(self, f) for f in sorted(self.model_fields_set & RECIPE_FIELDS)},
        }

    def recipe(self) -> Recipe:
        """The recipe to train with: the preset, with every recipe field set on purpose on top.

        The preset's threshold parameters are those of its own method: another method chosen
        without parameters of its own starts from that method's defaults.

        >>> Settings(_env_file=None, threshold="zscore").recipe().threshold_params
        {}
        """
        base = preset(self.preset)
        explicit = {f: getattr(self, f) for f in self.model_fields_set & RECIPE_FIELDS}
        if (
            explicit.get("threshold", base.threshold) != base.threshold
            and "threshold_params" not in explicit
        ):
            explicit["threshold_params"] = {}
        return base.updated(**explicit)

    def kafka_security(
        self, client: Literal["kafka-python", "librdkafka"] = "kafka-python"
    ) -> dict[str, object]:
        """Security options in ``client``'s names (``KAFKA_SECURITY``), for every client (consumer,
        producers, admin): SASL ones with a SASL protocol, TLS ones with an SSL protocol.

        >>> Settings(_env_file=None, security_protocol="SSL").kafka_security("librdkafka")
        {'security.protocol': 'ssl', 'ssl.endpoint.identification.algorithm': 'https'}
        """
        protocol = self.security_protocol
        opts: dict[str, object] = {}
        for name, (kafka_python, librdkafka) in KAFKA_SECURITY.items():
            value = getattr(self, name)
            if (
                value is None
                or (name.startswith("sasl_") and not protocol.startswith("SASL"))
                or (name.startswith("ssl_") and not protocol.endswith("SSL"))
            ):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = str(value)
            if client == "kafka-python":
                opts[kafka_python] = value
            else:
                opts[librdkafka] = _LIBRDKAFKA_VALUES.get(name, lambda v: v)(value)
        return opts

    def limits(self) -> Limits:
        """What the reading parser enforces beyond the schema: message size and future time."""
        return Limits(self.max_message_bytes, int(self.max_future_s * 1000))

    def train_options(self, **run: Any) -> TrainOptions:
        """How a training run goes beside the recipe: the seed and mixed precision set here, with
        what only the caller knows (``progress``, ``reuse_model``, ``jit_compile``) in ``run``."""
        return TrainOptions(seed=self.seed, mixed_precision=self.mixed_precision, **run)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, once every ``SENSORWATCH_*`` variable in them names a setting."""
        for source, where in ((env_settings, ""), (dotenv_settings, " in .env")):
            if isinstance(source, EnvSettingsSource):  # DotEnvSettingsSource is one too
                _check_known(source.env_vars, where)
        return init_settings, env_settings, dotenv_settings, file_secret_settings


def _check_known(variables: Any, where: str) -> None:
    """``UnknownSettingError`` for the first prefixed variable that names no setting, with the
    closest setting's variable."""
    known = [name.upper() for name in Settings.model_fields]
    for name in sorted(str(key).upper() for key in variables):
        field = name.removeprefix(ENV_PREFIX)
        if field != name and field not in known and name not in NOT_SETTINGS:
            # Compared without the prefix, which every name shares.
            close = difflib.get_close_matches(field, known, n=1)
            hint = (
                f"did you mean {ENV_PREFIX}{close[0]}?" if close else "see `sensorwatch settings`"
            )
            raise UnknownSettingError(f"{name}{where}: not a setting; {hint}")
