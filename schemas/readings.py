"""Reading messages on the hot path: bytes in, a `Reading` or a `Rejected` with its reason out.

The rules are those of ``reading.schema.json``. They are checked here with orjson and a few
type tests rather than a generic schema engine, because this runs once per Kafka record.
Every rejection reason is one line that names the field and the problem. How large a message
may be and how far ahead of the clock its time may lie are settings (``max_message_bytes``,
``max_future_s``): the parser takes them as ``Limits`` (``Settings.limits()``), with no defaults of
its own.

>>> limits = Limits(max_bytes=65_536, max_future_ms=300_000)
>>> parse_reading(b'{"asset_id": "pump-7", "ts": 0, "values": {"flow": 12}}', limits=limits, now_ms=0)
Reading(asset_id='pump-7', ts_ms=0, values={'flow': 12.0})
>>> parse_reading(b'{"asset_id": "pump-7", "ts": 0, "values": {"flow": "x"}}', limits=limits, now_ms=0).reason
'values.flow: must be a number, got string'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import isfinite
from typing import Any

import orjson

from sensorwatch.schemas.reasons import clip, field_name, json_type, name_list, nonfinite, span
from sensorwatch.schemas.records import Reading, Rejected, iso_ms

FIELDS = ("asset_id", "ts", "values")
MAX_ASSET_ID = 128
# The same pattern is the string branch of "ts" in reading.schema.json (a test holds them equal).
ISO_PATTERN = (
    "^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]"
    "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,9})?)?"
    "(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?$"
)
# The model computes in float32: a larger value would become infinity there.
FLOAT32_MAX = 3.4028234663852886e38
MIN_TS_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z: the range a datetime can show
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

_FIELD_SET = frozenset(FIELDS)
_ISO = re.compile(ISO_PATTERN)
# C0 and C1 control characters and the Unicode line separators (the same set as the JSON Schema).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a reading message may not exceed beyond the schema: its size in bytes, and how far its
    ``ts`` may lie ahead of the clock. Made from the settings (``Settings.limits()``)."""

    max_bytes: int
    max_future_ms: int


class _Invalid(Exception):
    """A rule the message breaks; its text is the rejection reason."""


def parse_reading(
    raw: bytes | None,
    key: bytes | None = None,
    *,
    limits: Limits,
    channels: Collection[str] | None = None,
    now_ms: int | None = None,
) -> Reading | Rejected:
    """One record's value as a `Reading`, or a `Rejected` saying why it goes to the dead letters.

    ``channels``, when given, is the exact set of channels a reading must carry. ``now_ms``
    (default: the clock) is what ``ts`` may exceed by at most ``limits.max_future_ms``, and a
    message may be ``limits.max_bytes`` long. ``key`` is advisory: it is kept on a rejection and
    never compared with ``asset_id``.

    >>> limits = Limits(max_bytes=65_536, max_future_ms=300_000)
    >>> parse_reading(b'{"asset_id": "p", "ts": "1970-01-01T00:00:01Z", "values": {"a": 1.5}}', limits=limits).ts_ms
    1000
    >>> parse_reading(b'{"asset_id": "p", "ts": 0, "values": {"a": NaN}}', limits=limits).reason
    'values.a: not a finite number (NaN)'
    """
    if not raw:
        return Rejected("empty message", b"" if raw is None else raw, key)
    if len(raw) > limits.max_bytes:
        return Rejected(f"oversized: {len(raw)} bytes > {limits.max_bytes}", raw, key)
    max_future_ms = limits.max_future_ms
    chans = _channel_set(channels)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return Rejected(_refusal(raw, error, chans, now_ms, max_future_ms), raw, key)
    try:
        return _reading(doc, chans, now_ms, max_future_ms)
    except _Invalid as invalid:
        return Rejected(str(invalid), raw, key)


def parse_batch(
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    limits: Limits,
    channels: Collection[str] | None = None,
    now_ms: int | None = None,
) -> tuple[list[Reading], list[Rejected]]:
    """Split a poll's ``(key, value)`` pairs into readings and rejects, each in input order.

    >>> records = [(b"p", b'{"asset_id": "p", "ts": 0, "values": {"a": 1}}'), (b"q", b"[]")]
    >>> oks, errs = parse_batch(records, limits=Limits(max_bytes=65_536, max_future_ms=300_000))
    >>> [r.asset_id for r in oks], [(e.key, e.reason) for e in errs]
    (['p'], [(b'q', 'not an object: got list')])
    """
    chans = _channel_set(channels)
    now = _now_ms() if now_ms is None else now_ms  # one clock reading per poll is precise enough
    oks: list[Reading] = []
    errs: list[Rejected] = []
    for key, value in records:
        result = parse_reading(value, key, limits=limits, channels=chans, now_ms=now)
        if isinstance(result, Reading):
            oks.append(result)
        else:
            errs.append(result)
    return oks, errs


def _reading(
    doc: object, channels: frozenset[str] | None, now_ms: int | None, max_future_ms: int
) -> Reading:
    if type(doc) is not dict:
        raise _Invalid(f"not an object: got {json_type(doc)}")
    if doc.keys() != _FIELD_SET:
        _check_fields(doc)
    return Reading(
        _asset_id(doc["asset_id"]),
        _ts_ms(doc["ts"], now_ms, max_future_ms),
        _values(doc["values"], channels),
    )


def _check_fields(doc: dict[str, object]) -> None:
    for name in FIELDS:
        if name not in doc:
            raise _Invalid(f"missing field {name!r}")
    extra = [name for name in doc if name not in _FIELD_SET]
    raise _Invalid(f"unexpected field{'s' if len(extra) > 1 else ''} {name_list(extra)}")


def _asset_id(asset_id: object) -> str:
    if type(asset_id) is not str:
        raise _Invalid(f"asset_id: must be a non-empty string, got {json_type(asset_id)}")
    if not asset_id:
        raise _Invalid("asset_id: must be a non-empty string")
    if len(asset_id) > MAX_ASSET_ID:
        raise _Invalid(f"asset_id: {len(asset_id)} characters > {MAX_ASSET_ID}")
    if _CONTROL.search(asset_id):  # a newline or an escape in an id would forge log lines
        raise _Invalid("asset_id: control characters are not allowed")
    return asset_id


def _ts_ms(ts: Any, now_ms: int | None, max_future_ms: int) -> int:
    # ts is any JSON value; the exact type tests below (fast on the hot path) narrow it by hand.
    kind = type(ts)
    if kind is str:
        ms = _iso_ms(ts)
        if not MIN_TS_MS <= ms <= MAX_TS_MS:  # year 1 with a positive offset is still year 0 in UTC
            raise _Invalid(f"ts: {clip(ts)!r} is before 0001-01-01T00:00:00Z")
    elif kind is int or (kind is float and ts.is_integer()):  # JSON Schema counts 1.0 as an integer
        ms = int(ts)
        if not MIN_TS_MS <= ms <= MAX_TS_MS:
            raise _Invalid(f"ts: epoch milliseconds {ts!r} out of range")
    elif kind is float:
        raise _Invalid(f"ts: epoch milliseconds must be an integer, got {ts!r}")
    else:
        raise _Invalid(
            f"ts: must be an ISO-8601 string or integer epoch milliseconds, got {json_type(ts)}"
        )
    ahead = ms - (_now_ms() if now_ms is None else now_ms)
    if ahead > max_future_ms:
        shown = clip(ts) if kind is str else f"{ms} ({iso_ms(ms)})"
        raise _Invalid(f"ts: {shown} is {span(ahead)} in the future")
    return ms


def _iso_ms(ts: str) -> int:
    if _ISO.fullmatch(ts) is None:
        raise _Invalid(f"ts: unparsable timestamp {clip(ts)!r}")
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError as error:  # the pattern lets impossible dates through, e.g. 2024-02-30
        raise _Invalid(f"ts: unparsable timestamp {clip(ts)!r} ({error})") from None
    # timedelta floor division is exact, where float seconds * 1000 can land 1 ms low.
    if moment.tzinfo is None:
        return (moment - _EPOCH_NAIVE) // _MS
    return (moment - _EPOCH) // _MS


def _values(values: object, channels: frozenset[str] | None) -> dict[str, float]:
    if type(values) is not dict:
        raise _Invalid(f"values: must be an object, got {json_type(values)}")
    if not values:
        raise _Invalid("values: must have at least one channel")
    if channels is not None and values.keys() != channels:
        _check_channels(values, channels)
    if "" in values:
        raise _Invalid("values: empty channel name")
    for name, value in values.items():
        kind = type(value)
        if kind is float:
            if not isfinite(value):
                raise _Invalid(
                    f"values.{field_name(name)}: not a finite number ({nonfinite(value)})"
                )
            if abs(value) > FLOAT32_MAX:
                raise _Invalid(f"values.{field_name(name)}: out of float32 range ({value:g})")
        elif kind is int:  # bool is a subclass of int, but type() keeps it out of this branch
            values[name] = _int_value(name, value)
        else:
            raise _Invalid(f"values.{field_name(name)}: must be a number, got {json_type(value)}")
    return values  # freshly parsed, so owned here: no copy


def _check_channels(values: dict[str, object], channels: frozenset[str]) -> None:
    unknown = [name for name in values if name not in channels]
    if unknown:
        raise _Invalid(
            f"values: unknown channel{'s' if len(unknown) > 1 else ''} {name_list(unknown)}"
        )
    missing = sorted(channels - values.keys())
    raise _Invalid(f"values: missing channel{'s' if len(missing) > 1 else ''} {name_list(missing)}")


def _int_value(name: str, value: int) -> float:
    try:
        number = float(value)
    except OverflowError:  # only the lenient fallback parser yields ints past float range
        raise _Invalid(f"values.{field_name(name)}: not a finite number (too large)") from None
    if abs(number) > FLOAT32_MAX:
        raise _Invalid(f"values.{field_name(name)}: out of float32 range ({number:g})")
    return number


def _refusal(
    raw: bytes,
    error: orjson.JSONDecodeError,
    channels: frozenset[str] | None,
    now_ms: int | None,
    max_future_ms: int,
) -> str:
    """Why orjson refused ``raw``, naming the field when the cause is NaN, Infinity or 1e999.

    The stdlib parser reads those literals, so the usual checks can name the value; a message
    it reads that passes them held something else orjson refuses (a lone surrogate, UTF-16).
    """
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as lenient_error:
        return f"malformed JSON: {lenient_error}"
    try:
        _reading(doc, channels, now_ms, max_future_ms)
    except _Invalid as invalid:
        return str(invalid)
    return f"malformed JSON: {error}"


def _channel_set(channels: Collection[str] | None) -> frozenset[str] | None:
    if channels is None or isinstance(channels, frozenset):
        return channels
    return frozenset(channels)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
