"""One settings object for the whole service: every field documents itself and its variable.

Each field reads ``SENSORWATCH_<NAME>`` from the environment (or a ``.env`` file); CLI flags
override them. Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".sensorwatch")


class Settings(BaseSettings):
    """sensorwatch settings (environment prefix ``SENSORWATCH_``)."""

    model_config = SettingsConfigDict(
        env_prefix="SENSORWATCH_", env_file=".env", extra="ignore", frozen=True
    )

    # Kafka
    bootstrap_servers: str = Field(
        "", description="Kafka bootstrap servers, comma-separated; empty starts the embedded broker."
    )
    readings_topic: str = Field("sensor-readings", description="Topic the sensor readings arrive on.")
    anomalies_topic: str = Field("sensor-anomalies", description="Topic anomaly events are published to.")
    dlq_topic: str = Field("sensor-readings.dlq", description="Dead-letter topic for rejected records.")
    group_id: str = Field("sensorwatch-scorers", description="Consumer group of the scoring service.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, when the protocol uses SASL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (kept secret in logs).")
    max_poll_records: int = Field(2000, ge=1, description="Most records one poll returns.")
    poll_timeout_ms: int = Field(500, ge=1, description="How long one poll waits for records.")
    max_poll_interval_ms: int = Field(
        30_000, ge=1000, description="Kafka's limit between polls before the group evicts a consumer."
    )
    session_timeout_ms: int = Field(
        10_000, ge=1000, description="Consumer group session timeout; a group join waits about half of it."
    )
    max_message_bytes: int = Field(
        65_536, ge=256, description="Larger reading messages are dead-lettered as oversized."
    )

    # Windows
    window: int = Field(30, ge=2, description="Window length W in readings.")
    stride: int = Field(1, ge=1, description="Stride S: a window is scored every S readings of an asset.")
    max_gap_s: float = Field(
        60.0, gt=0, description="A gap between readings longer than this resets the asset's buffer."
    )
    grace_s: float = Field(
        5.0, ge=0, description="Out-of-order readings up to this much older than the newest are re-ordered."
    )
    max_future_s: float = Field(
        300.0, gt=0, description="Readings stamped further than this ahead of the clock are rejected."
    )

    # Decisions
    threshold_method: str = Field(
        "reference", description="Threshold method: reference, zscore, spot or dynamic (see models/thresholds.py)."
    )
    threshold_params: dict[str, float] = Field(
        default_factory=dict, description='Parameters of the threshold method, as JSON (e.g. {"quantile": 0.999}).'
    )
    score: Literal["mean", "max", "mean+level", "max+level"] = Field(
        "mean",
        description="How a window's per-channel errors make its score: their mean or the largest; "
        "+level adds how far the window's mean sits from the training data.",
    )
    min_windows: int = Field(3, ge=1, description="Consecutive anomalous windows before an alarm opens.")
    merge_windows: int = Field(
        30, ge=0, description="Alarms closer than this many windows on an asset are merged into one."
    )
    suppress_windows: int = Field(0, ge=0, description="Windows after an alarm closes before another may open.")
    clear_ratio: float = Field(
        0.0, ge=0, lt=1, description="An alarm clears once scores fall below this fraction of its own level (0: off)."
    )
    rearm_ratio: float = Field(
        0.0, ge=0, description="After an alarm clears, new ones need scores above this fraction of its level (0: off)."
    )

    # Service
    reload_interval_s: float = Field(
        30.0, ge=0, description="How often the service checks whether the champion alias moved (0: never)."
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of the Prometheus metrics endpoint (0: off).")

    # Models and MLflow
    tracking_uri: str = Field(
        f"sqlite:///{STATE_DIR}/mlflow.db", description="MLflow tracking URI."
    )
    artifact_root: str = Field(
        str(STATE_DIR / "artifacts"), description="Where a local MLflow store keeps artifacts."
    )
    experiment: str = Field("sensorwatch", description="MLflow experiment of the training runs.")
    model_name: str = Field("sensorwatch-lstm-ae", description="Registered model name.")
    model_alias: str = Field("champion", description="Alias the service loads and training promotes.")
    epochs: int = Field(30, ge=1, description="Most training epochs (early stopping ends sooner).")
    train_stride: int = Field(1, ge=1, description="Stride between training windows (thins long histories).")
    batch_size: int = Field(64, ge=1, description="Training batch size.")
    units: int = Field(64, ge=1, description="LSTM units of the encoder and the decoder.")
    mixed_precision: bool = Field(False, description="Train with float16 compute (GPUs with tensor cores).")
    seed: int = Field(7, description="Seed for the simulator and training.")

    # Benchmarks
    skab_dir: Path = Field(
        Path("../shared/datasets/skab"), description="The SKAB benchmark data (valve1/, valve2/, other/)."
    )

    def kafka_security(self) -> dict[str, object]:
        """Security options in kafka-python's names, only those that are set."""
        opts: dict[str, object] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            opts["sasl_plain_username"] = self.sasl_username
        if self.sasl_password:
            opts["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return opts
