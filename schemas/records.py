"""The records that pass between layers: a validated reading, a rejected record, an anomaly event."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(iso: str) -> int:
    """An ISO-8601 time (``Z`` or an offset) as epoch milliseconds.

    >>> ms_of("1970-01-01T00:00:01.500Z"), ms_of(iso_ms(1_714_564_800_123))
    (1500, 1714564800123)
    """
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(milliseconds=1)


def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC string, exact to the millisecond, with a four-digit
    year (what JSON Schema's ``date-time`` needs) from year 1 to 9999.

    >>> iso_ms(0)
    '1970-01-01T00:00:00.000Z'
    >>> iso_ms(-62_135_596_800_000), iso_ms(253_402_300_799_999)
    ('0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z')
    """
    t = _EPOCH + timedelta(milliseconds=int(ts_ms))
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
        f"T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}Z"
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated sensor reading: an asset's channel values at one event time."""

    asset_id: str
    ts_ms: int
    values: dict[str, float]


REJECT_KINDS = (
    "empty",
    "oversized",
    "malformed_json",
    "not_object",
    "fields",
    "asset_id",
    "ts",
    "future",
    "channels",
    "values",
    "late",
    "duplicate",
    "invalid",
)
_PREFIXES = (
    ("empty message", "empty"),
    ("oversized", "oversized"),
    ("malformed JSON", "malformed_json"),
    ("not an object", "not_object"),
    ("missing field", "fields"),
    ("unexpected field", "fields"),
    ("asset_id", "asset_id"),
    ("values: unknown channel", "channels"),
    ("values: missing channel", "channels"),
    ("values", "values"),
    ("late", "late"),
    ("duplicate", "duplicate"),
)


def reject_kind(reason: str) -> str:
    """The kind of a rejection reason (``REJECT_KINDS``)."""
    if reason.startswith("ts"):
        return "future" if reason.endswith("in the future") else "ts"
    return next((kind for prefix, kind in _PREFIXES if reason.startswith(prefix)), "invalid")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that failed validation, with the reason it goes to the dead-letter topic under."""

    reason: str
    raw: bytes
    key: bytes | None = None

    @property
    def kind(self) -> str:
        """The reason as a label from ``REJECT_KINDS``: bounded, so fit for a metric.

        >>> Rejected("values.flow: not a finite number (NaN)", b"").kind
        'values'
        >>> Rejected("ts: 99 is 3 days in the future", b"").kind
        'future'
        """
        return reject_kind(self.reason)


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """A window (or a run of windows) the model could not reconstruct: what the service publishes.

    An alarm is told twice: ``kind="opened"`` when it opens and ``kind="cleared"`` when it closes,
    both with the same ``event_id``, derived from the asset, the alarm's start and the model version,
    so a consumer can drop a re-sent event (after a restart the service may send one again).

    >>> e = AnomalyEvent("p", "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:29.000Z", 3.0, 1.0, {}, "4")
    >>> e.event_id == event_id("p", "2024-05-01T12:00:00.000Z", "4"), e.kind
    (True, 'opened')
    """

    asset_id: str
    window_start: str
    window_end: str
    score: float
    threshold: float
    contributions: dict[str, float]
    model_version: str
    windows: int = 1
    detected_at: str = field(
        default_factory=lambda: iso_ms(int(datetime.now(UTC).timestamp() * 1000))
    )
    kind: str = "opened"
    event_id: str = ""
    # The largest threshold scale at which this alarm still opens (0: not known): the evidence
    # review feedback tunes the threshold with (``sensorwatch.pipeline.review.tuning``).
    margin: float = 0.0

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self, "event_id", event_id(self.asset_id, self.window_start, self.model_version)
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def start_ms(self) -> int:
        return ms_of(self.window_start)

    @property
    def end_ms(self) -> int:
        return ms_of(self.window_end)

    @property
    def duration_s(self) -> float:
        """How long the alarm lasted (so far, for an ``opened`` event), from its first reading to its last.

        >>> AnomalyEvent("p", "2024-05-01T12:00:00.000Z", "2024-05-01T12:01:30.500Z", 3.0, 1.0, {}, "4").duration_s
        90.5
        """
        return (self.end_ms - self.start_ms) / 1000


EVENT_NAMESPACE = uuid.UUID("6f1c4c1e-4b7a-5e0b-9a57-5e2d0a1c3b11")


def event_id(asset_id: str, alarm_start: str, model_version: str) -> str:
    """The id of an alarm: a UUID derived from its asset, its start and the model version.

    >>> event_id("pump-7", "2024-05-01T12:00:00.000Z", "4") == event_id("pump-7", "2024-05-01T12:00:00.000Z", "4")
    True
    """
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{asset_id}\x00{alarm_start}\x00{model_version}"))
