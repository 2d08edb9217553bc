"""The service's Prometheus metrics, behind one small object (a fresh registry per service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class ServiceMetrics:
    """Counters of what happened to every record, and how long a poll's work took."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("sensorwatch_records", "Records polled from the readings topic", registry=r)
        self.scored = Counter("sensorwatch_readings_scored", "Valid readings taken into a window", registry=r)
        self.rejected = Counter(
            "sensorwatch_records_rejected", "Records sent to the dead-letter topic", ["kind"], registry=r
        )
        self.windows = Counter("sensorwatch_windows_scored", "Windows scored by the model", registry=r)
        self.anomalies = Counter("sensorwatch_anomalies", "Alarms opened (each also publishes a cleared event when it closes)", registry=r)
        self.gaps = Counter("sensorwatch_gaps", "Asset buffers reset by a gap in the readings", registry=r)
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
            "sensorwatch_model_refused", "Model versions refused by a hot swap (changed files, other channels, window or cadence)",
            registry=r,
        )
        self.review_logged = Counter(
            "sensorwatch_review_logged", "Anomaly events logged to MLflow for review", registry=r
        )
        self.review_dropped = Counter(
            "sensorwatch_review_dropped", "Anomaly events not logged to MLflow (buffer full, or still held at shutdown)",
            registry=r,
        )
        self.review_pending = Gauge("sensorwatch_review_pending", "Anomaly events waiting for MLflow", registry=r)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A metric's current value (for summaries and tests)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0
