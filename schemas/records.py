"""The records that pass between layers: a validated reading, a rejected record, an anomaly event."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC string.

    >>> iso_ms(0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated sensor reading: an asset's channel values at one event time."""

    asset_id: str
    ts_ms: int
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that failed validation, with the reason it goes to the dead-letter topic under."""

    reason: str
    raw: bytes
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """A window (or a run of windows) the model could not reconstruct: what the service publishes."""

    asset_id: str
    window_start: str
    window_end: str
    score: float
    threshold: float
    contributions: dict[str, float]
    model_version: str
    windows: int = 1
    detected_at: str = field(default_factory=lambda: iso_ms(int(datetime.now(UTC).timestamp() * 1000)))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
