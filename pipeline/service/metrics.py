"""The service's Prometheus metrics, behind one small object (a fresh registry per service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Counters of what happened to every record, and how long a poll's work took."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "sensorwatch_records", "Records polled from the readings topic", registry=r
        )
        self.scored = Counter(
            "sensorwatch_readings_scored", "Valid readings taken into a window", registry=r
        )
        self.rejected = Counter(
            "sensorwatch_records_rejected",
            "Records sent to the dead-letter topic",
            ["kind"],
            registry=r,
        )
        self.windows = Counter(
            "sensorwatch_windows_scored", "Windows scored by the model", registry=r
        )
        self.anomalies = Counter(
            "sensorwatch_anomalies",
            "Alarms opened (each also publishes a cleared event when it closes)",
            registry=r,
        )
        self.gaps = Counter(
            "sensorwatch_gaps", "Asset buffers reset by a gap in the readings", registry=r
        )
        self.windowless = Counter(
            "sensorwatch_windowless_stretches",
            "Stretches of an asset's readings that a gap ended before they filled one window",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "sensorwatch_batch_seconds", "Time from poll to commit for one batch", registry=r
        )
        self.model_version = Gauge("sensorwatch_model_version", "Model version in use", registry=r)
        self.model_refused = Counter(
            "sensorwatch_model_refused",
            "Model versions refused by a hot swap (changed files, other channels, window or cadence)",
            registry=r,
        )
        self.champion_unusable = Gauge(
            "sensorwatch_champion_unusable",
            "1 while the champion alias names a version this replica cannot serve (refused or "
            "failing to load; /readyz says why), else 0",
            registry=r,
        )
        self.model_check_failed = Counter(
            "sensorwatch_model_check_failed",
            "Checks of the champion alias that failed (the registry out of reach or erring); the "
            "service goes on with the version it has",
            registry=r,
        )
        self.review_logged = Counter(
            "sensorwatch_review_logged", "Anomaly events logged to MLflow for review", registry=r
        )
        self.review_dropped = Counter(
            "sensorwatch_review_dropped",
            "Anomaly events not logged to MLflow (buffer full, or still held at shutdown)",
            registry=r,
        )
        self.review_pending = Gauge(
            "sensorwatch_review_pending", "Anomaly events waiting for MLflow", registry=r
        )
        self.lag = Gauge(
            "sensorwatch_consumer_lag",
            "Records on each assigned partition not yet read (high watermark minus position)",
            ["partition"],
            registry=r,
        )
        self.state_assets = Gauge(
            "sensorwatch_state_assets", "Assets whose window state this replica holds", registry=r
        )
        self.state_bytes = Gauge(
            "sensorwatch_state_window_bytes",
            "Bytes of the window buffers this replica holds",
            registry=r,
        )
        self.ready = Gauge(
            "sensorwatch_ready", "1 when the replica is ready (as /readyz says), else 0", registry=r
        )

    def observe(self, lag: dict[int, int], assets: int, state_bytes: int) -> None:
        """Lag of the partitions assigned now (those gone since are dropped), and the state held."""
        self.lag.clear()
        for partition, records in lag.items():
            self.lag.labels(partition=str(partition)).set(records)
        self.state_assets.set(assets)
        self.state_bytes.set(state_bytes)

    def value(self, name: str, **labels: str) -> float:
        """A metric's current value (for summaries and tests)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0
