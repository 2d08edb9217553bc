"""Property-based fuzz tests: no input gets past the parser or the step as an exception.

Hypothesis draws random bytes, random JSON, reading-shaped messages with extreme numbers, odd
timestamps and odd unicode, and whole polls that mix them with good readings. The parser must
answer each input with exactly one `Reading` that the model can use or one `Rejected` whose
reason is a single line with a bounded kind. The step must account for every record: dead-lettered,
skipped as a replay, scored, or waiting for its grace period. On the embedded broker the service
must score or dead-letter every record, commit them all, and keep running.

``TRIED`` counts the inputs each test ran; the counts are printed when the module ends (``-s``).
No example database is kept (``database=None``): a failure is told with its shrunk example.
"""

from __future__ import annotations

import json
import math
import threading
import time
import traceback
import unicodedata
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from helpers import committed, fresh, read_all, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sensorwatch.models.autoencoder import build_autoencoder
from sensorwatch.models.detector import Detector
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.kafka.sinks import ChangelogSink, DeadLetterSink, EventSink
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.pipeline.stream.step import ParseRules, Polled, StepOutput, drain, step
from sensorwatch.schemas.events import decode_event, encode_event
from sensorwatch.schemas.readings import (
    FLOAT32_MAX, MAX_ASSET_ID, MAX_TS_MS, MIN_TS_MS, encode_reading, parse_batch, parse_reading,
)
from sensorwatch.schemas.records import REJECT_KINDS, Reading, Rejected, reject_kind

NOW = 1_700_000_000_000  # the clock of the in-memory tests: 2023-11-14T22:13:20Z
CHANNELS = ("a", "b")
# Kinds the parser may give: late and duplicate are the windower's, invalid is the unclassified fallback.
PARSE_KINDS = frozenset(REJECT_KINDS) - {"late", "duplicate", "invalid"}
TRIED: Counter[str] = Counter()

PARSER = settings(max_examples=2000, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEAVY = settings(PARSER, max_examples=300)


@pytest.fixture(scope="module", autouse=True)
def count_inputs():
    """Print how many inputs each test of this module tried."""
    yield
    print(f"\nfuzz inputs tried: {sum(TRIED.values())} " + " ".join(f"{k}={v}" for k, v in sorted(TRIED.items())))


# JSON text, written by hand where json.dumps cannot say it: NaN literals, lone surrogate escapes,
# repeated object keys, numbers no parser reads the same way.

class Raw(str):
    """JSON text used as it is."""


class Pairs(list):
    """A JSON object as (name, value) pairs, so a name may repeat."""


def dump(x: object, ascii_only: bool = True) -> str:
    if isinstance(x, Raw):
        return str(x)
    if isinstance(x, dict):
        x = Pairs(x.items())
    if isinstance(x, Pairs):
        return "{" + ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in x) + "}"
    if isinstance(x, list):
        return "[" + ",".join(dump(v, ascii_only) for v in x) + "]"
    return json.dumps(x, ensure_ascii=ascii_only)  # floats nan and inf become NaN and Infinity


@st.composite
def encoded(draw, docs: st.SearchStrategy) -> bytes:
    """A document as message bytes: mostly UTF-8, lone surrogates kept (so invalid UTF-8), now and then UTF-16/32."""
    text = dump(draw(docs), draw(st.booleans()))
    codec = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "utf-32"]))
    return text.encode(codec, "surrogatepass")


EXTREME_NUMBERS = [
    1e308, -1e308, 1e25, -1e25, 3.5e38, -3.5e38, FLOAT32_MAX, -FLOAT32_MAX, 3.4028235677973366e38, 5e-324, 0.0, -0.0,
    math.nan, math.inf, -math.inf, 10**400, -(10**400), 2**63, 2**63 - 1, -(2**63), 2**64, 10**30,
]
NUMBER_LITERALS = [
    "NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "-0", "-0.0", "0e-99999", "1" + "0" * 400,
    "1" + "0" * 5000, "01", "1.", ".5", "+1", "0x10", "1e", "--1", "1_000", "nan", "inf",
]
numbers = st.one_of(
    st.integers(), st.floats(), st.sampled_from(EXTREME_NUMBERS), st.sampled_from(NUMBER_LITERALS).map(Raw),
)

ODD_STRINGS = [
    "", " ", "pump-7", "a" * MAX_ASSET_ID, "a" * (MAX_ASSET_ID + 1), "é" * MAX_ASSET_ID, "\U0001f680" * 40,
    "\u202epump-7", "pump\u200f7", "\ufeffpump", "pump\n7", "\x00", "\x1b[31mred", "\x7f", "\x85", "\u2028",
    "\u2029", "\ud800", "\udfff", "\ud83d\ude80", "a.b", "x" * 5000, "asset_id", "ts", "values",
]
ESCAPES = [
    "\\ud800", "\\udbff\\udfff", "\\ud83d\\ude80", "\\ude80\\ud83d", "\\u0000", "\\u001f", "\\u0085", "\\u2028",
    "\\u200f", "\\n", "\\t", "\\/", "\\\\", '\\"', "\\x41", "\\u12", "\\U0001F680", "\\", "\t", "\n",
]
escaped_strings = st.lists(
    st.sampled_from(ESCAPES) | st.text(max_size=3).map(lambda s: json.dumps(s)[1:-1]), max_size=6,
).map(lambda parts: Raw('"' + "".join(parts) + '"'))
strings = st.one_of(
    st.sampled_from(ODD_STRINGS), st.text(st.characters(exclude_categories=()), max_size=20), escaped_strings,
)
keys = st.one_of(st.none(), st.binary(max_size=20),
                 st.sampled_from([b"pump-7", b"p1", b"\xff\xfe", b"", "\U0001f680".encode()]))

# Valid by the schema, even where odd.
valid_ids = st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\u2028\u2029"),
                    min_size=1, max_size=MAX_ASSET_ID)
valid_numbers = st.floats(-FLOAT32_MAX, FLOAT32_MAX) | st.integers(-(2**63), 2**63 - 1)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, strings),
    lambda kids: st.lists(kids, max_size=4) | st.lists(st.tuples(strings, kids), max_size=4).map(Pairs),
    max_leaves=20,
)

ISO_EDGES = [
    "0001-01-01T00:00:00+23:59", "0001-01-01T12:00:00.5+23", "0001-01-01 00:00+0100", "0001-01-01T00:00:00Z",
    "0001-01-01 00:00", "0000-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59-23:59", "10000-01-01T00:00:00Z", "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z", "2024-02-30T00:00:00Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.0000001Z",
    "2023-11-14T22:13:20+2359", "2023-11-14T22:13:20-00", "2023-11-14T24:00:00Z", "2023-11-14T22:13:60Z",
    "2023-11-14T22:13:20Z\n", " 2023-11-14T22:13:20Z", "\uff12\uff10\uff12\uff13-11-14T22:13:20Z", "2023-11-14",
    "yesterday", "",
]
INT_TIMESTAMPS = [
    0, -1, MIN_TS_MS, MIN_TS_MS - 1, MAX_TS_MS, MAX_TS_MS + 1, NOW, NOW + 300_000, NOW + 300_001,
    2**63, 2**63 - 1, -(2**63), 2**64, 10**30, 10**400,
]


@st.composite
def iso_texts(draw) -> str:
    """ISO-8601-looking text, each part drawn a little past its range."""
    year, month, day = draw(st.integers(0, 10_000)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
    sep = draw(st.sampled_from("T t_"))
    frac = draw(st.sampled_from(["", ".5", ".123", ".123456789", ".1234567890"]))
    tz = draw(st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+2359", "+23", "-12"]))
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{frac}{tz}"


timestamps = st.one_of(
    st.sampled_from(INT_TIMESTAMPS), st.integers(), st.integers(MIN_TS_MS - 10, MAX_TS_MS + 10),
    st.sampled_from([1.0, 1.5, 1e308, -0.0, float(NOW), NOW + 0.5, math.nan, math.inf]),
    st.sampled_from(ISO_EDGES), iso_texts(), numbers, json_values,
)
channel_names = st.one_of(st.sampled_from(CHANNELS + ("", "a.b", "\x00", "\ud800", "\U0001f680", "x" * 200, "c")), strings)
values_objects = st.one_of(
    st.fixed_dictionaries({c: numbers for c in CHANNELS}),
    st.lists(st.tuples(channel_names, st.one_of(numbers, json_values)), max_size=6).map(Pairs),
    json_values,
)


@st.composite
def reading_docs(draw) -> Pairs:
    """A reading's three fields, each possibly hostile, then dropped, repeated, added to or reordered."""
    doc = Pairs([
        ("asset_id", draw(valid_ids | strings)),
        ("ts", draw(st.sampled_from(ISO_EDGES) | st.sampled_from(INT_TIMESTAMPS) | iso_texts() | timestamps)),
        ("values", draw(st.fixed_dictionaries({c: valid_numbers for c in CHANNELS}) | values_objects)),
    ])
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["drop", "repeat", "extra"]))
        if what == "drop" and doc:
            doc.pop(draw(st.integers(0, len(doc) - 1)))
        elif what == "repeat":  # a second asset_id, say, that disagrees with the first
            name = draw(st.sampled_from(["asset_id", "ts", "values"]))
            doc.append((name, draw({"asset_id": strings, "ts": timestamps, "values": values_objects}[name])))
        else:
            doc.append((draw(st.sampled_from(["extra", "Asset_id", "ts ", ""]) | strings), draw(json_values)))
    order = draw(st.permutations(range(len(doc))))
    return Pairs(doc[i] for i in order)


OFFSETS = [None, UTC, timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59)),
           timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=12))]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@st.composite
def valid_timestamps(draw) -> tuple[object, int]:
    """(ts as the message writes it, its epoch milliseconds) within the schema's range and not in the future."""
    if draw(st.booleans()):
        ms = draw(st.integers(MIN_TS_MS, NOW) | st.sampled_from([MIN_TS_MS, 0, NOW]))
        return ms, ms
    moment = draw(st.datetimes(datetime(1, 1, 1), datetime(2023, 11, 13), timezones=st.sampled_from(OFFSETS)))
    spec = draw(st.sampled_from(["seconds", "milliseconds", "microseconds"]))
    moment = moment.replace(microsecond={"seconds": 0, "milliseconds": moment.microsecond // 1000 * 1000}.get(spec, moment.microsecond))
    ms = ((moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - EPOCH) // timedelta(milliseconds=1)
    if not MIN_TS_MS <= ms <= NOW:
        return draw(valid_timestamps())
    text = moment.isoformat(sep=draw(st.sampled_from("T ")), timespec=spec)
    return (text.replace("+00:00", "Z") if draw(st.booleans()) else text), ms


@st.composite
def valid_readings(draw) -> tuple[bytes, Reading]:
    """A valid message and the reading it says."""
    asset_id = draw(valid_ids)
    ts, ms = draw(valid_timestamps())
    names = draw(st.lists(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10),
                          min_size=1, max_size=5, unique=True))
    values = {name: draw(valid_numbers) for name in names}
    raw = json.dumps({"asset_id": asset_id, "ts": ts, "values": values}, ensure_ascii=draw(st.booleans())).encode()
    return raw, Reading(asset_id, ms, {name: float(v) for name, v in values.items()})


hostile_messages = st.one_of(
    encoded(reading_docs()), encoded(json_values), st.binary(max_size=200),
    valid_readings().map(lambda pair: pair[0]), st.none(), st.just(b""),
)


def check_outcome(result: object, raw: bytes | None, key: bytes | None, now_ms: int,
                  max_future_ms: int = 300_000, channels: frozenset[str] | None = None) -> None:
    """The parser's contract for one input: a usable reading, or a one-line reason of a bounded kind."""
    assert type(result) in (Reading, Rejected), result
    if isinstance(result, Rejected):
        assert type(result.reason) is str and result.reason.strip()
        assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in result.reason), result.reason
        result.reason.encode()  # it travels as a dead letter's header
        assert result.kind in PARSE_KINDS, (result.kind, result.reason)
        assert result.raw == (raw or b"") and result.key == key
        return
    r = result
    assert type(r.asset_id) is str and 1 <= len(r.asset_id) <= MAX_ASSET_ID
    assert not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in r.asset_id), r
    r.asset_id.encode()  # it becomes a record key
    # The lower bound is where iso_ms (events, logs) stops working.
    assert type(r.ts_ms) is int and MIN_TS_MS <= r.ts_ms <= now_ms + max_future_ms, r
    assert r.values and (channels is None or r.values.keys() == channels)
    for name, value in r.values.items():
        assert type(name) is str and name
        name.encode()
        assert type(value) is float and math.isfinite(value) and abs(value) <= FLOAT32_MAX, r
        assert np.isfinite(np.float32(value))


# 1. The parser.

@PARSER
@given(raw=st.one_of(st.binary(max_size=300), st.none()), key=keys)
def test_any_bytes_get_one_outcome(raw: bytes | None, key: bytes | None) -> None:
    TRIED["any_bytes"] += 1
    check_outcome(parse_reading(raw, key, now_ms=NOW), raw, key, NOW)


@st.composite
def damaged(draw) -> bytes:
    """A valid message truncated, with a byte changed, or with bytes inserted."""
    raw = bytearray(draw(valid_readings())[0])
    at = draw(st.integers(0, len(raw) - 1))
    what = draw(st.sampled_from(["cut", "flip", "insert"]))
    if what == "cut":
        return bytes(raw[:at])
    if what == "flip":
        raw[at] = draw(st.integers(0, 255))
        return bytes(raw)
    return bytes(raw[:at]) + draw(st.binary(min_size=1, max_size=8)) + bytes(raw[at:])


@PARSER
@given(raw=damaged(), key=keys)
def test_damaged_messages_get_one_outcome(raw: bytes, key: bytes | None) -> None:
    TRIED["damaged"] += 1
    check_outcome(parse_reading(raw, key, now_ms=NOW), raw, key, NOW)


@PARSER
@given(raw=encoded(json_values), key=keys)
def test_any_json_gets_one_outcome(raw: bytes, key: bytes | None) -> None:
    TRIED["any_json"] += 1
    check_outcome(parse_reading(raw, key, now_ms=NOW), raw, key, NOW)


@PARSER
@given(raw=encoded(reading_docs()), key=keys, channels=st.sampled_from([None, frozenset(CHANNELS)]),
       max_future_ms=st.sampled_from([0, 300_000, 10**12]))
def test_reading_shaped_messages_get_one_outcome(raw: bytes, key: bytes | None, channels, max_future_ms: int) -> None:
    TRIED["reading_shaped"] += 1
    result = parse_reading(raw, key, channels=channels, now_ms=NOW, max_future_ms=max_future_ms)
    check_outcome(result, raw, key, NOW, max_future_ms, channels)


NESTINGS = {
    "array": lambda d: "[" * d + "1" + "]" * d,
    "object": lambda d: '{"a":' * d + "1" + "}" * d,
    "in_values": lambda d: '{"asset_id":"p","ts":0,"values":{"a":' + "[" * d + "]" * d + "}}",
    "in_asset_id": lambda d: '{"asset_id":' + '{"a":' * d + "1" + "}" * d + ',"ts":0,"values":{"a":1}}',
    "in_ts": lambda d: '{"asset_id":"p","ts":' + "[" * d + "]" * d + ',"values":{"a":1}}',
}


@HEAVY
@given(depth=st.integers(1, 20_000) | st.sampled_from([127, 128, 999, 1000, 1024, 1025, 10_000]),
       shape=st.sampled_from(sorted(NESTINGS)), closed=st.booleans(), max_bytes=st.sampled_from([65_536, 2**20]))
def test_deep_nesting_gets_one_outcome(depth: int, shape: str, closed: bool, max_bytes: int) -> None:
    TRIED["deep_nesting"] += 1
    text = NESTINGS[shape](depth)
    raw = (text if closed else text[: len(text) // 2]).encode()
    result = parse_reading(raw, now_ms=NOW, max_bytes=max_bytes)
    check_outcome(result, raw, None, NOW)
    assert isinstance(result, Rejected)


@HEAVY
@given(channels=st.integers(0, 20_000), id_length=st.integers(0, 200_000) | st.sampled_from([128, 129, 65_536]),
       max_bytes=st.sampled_from([65_536, 2**20, 2**22]), value=st.sampled_from([1.0, 3.5e38, "x" * 50]))
def test_huge_messages_get_one_outcome(channels: int, id_length: int, max_bytes: int, value: object) -> None:
    TRIED["huge"] += 1
    doc = {"asset_id": "p" * id_length, "ts": NOW, "values": {f"c{i}": value for i in range(channels)}}
    raw = json.dumps(doc).encode()
    result = parse_reading(raw, now_ms=NOW, max_bytes=max_bytes)
    check_outcome(result, raw, None, NOW)
    if len(raw) > max_bytes:
        assert isinstance(result, Rejected) and result.kind == "oversized"


@PARSER
@given(message=valid_readings(), key=keys)
def test_valid_readings_are_accepted_as_sent(message: tuple[bytes, Reading], key: bytes | None) -> None:
    TRIED["valid"] += 1
    raw, expected = message
    result = parse_reading(raw, key, now_ms=NOW)
    assert result == expected
    check_outcome(result, raw, key, NOW)
    assert parse_reading(encode_reading(result), now_ms=NOW) == result


@HEAVY
@given(records=st.lists(st.tuples(keys, hostile_messages), max_size=30))
def test_a_batch_gets_one_outcome_per_record_in_order(records: list[tuple[bytes | None, bytes | None]]) -> None:
    TRIED["batch"] += len(records)
    oks, errs = parse_batch(records, channels=CHANNELS, now_ms=NOW)
    one_by_one = [parse_reading(value, key, channels=CHANNELS, now_ms=NOW) for key, value in records]
    assert len(oks) + len(errs) == len(records)
    assert oks == [r for r in one_by_one if isinstance(r, Reading)]
    assert errs == [r for r in one_by_one if isinstance(r, Rejected)]
    for (key, value), result in zip(records, one_by_one):
        check_outcome(result, value, key, NOW, channels=frozenset(CHANNELS))


# 2. The service's step, in memory.

RECIPE = Recipe(window=4, score="mean", min_windows=1, merge_windows=0, suppress_windows=0,
                clear_ratio=0.0, rearm_ratio=0.0, grace_intervals=2)


@pytest.fixture(scope="module")
def detector() -> Detector:
    """An untrained model with threshold 0: every window is anomalous, so alarms open and events are made."""
    spec = DetectorSpec(list(CHANNELS), [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], {"method": "reference", "value": 0.0},
                        recipe=RECIPE, interval_ms=1000)
    return Detector(build_autoencoder(RECIPE.window, len(CHANNELS), units=4), spec, version="1").warm_up()


GOOD_IDS = ["p1", "pump-7", "\u202e\U0001f680-pump", "é" * MAX_ASSET_ID]
# Where a stream starts: now, the epoch, year 1 (below MIN_TS_MS, so only an ISO time with a
# positive offset can say it), the first and the last millisecond of the schema's range.
EARLY_MS = MIN_TS_MS - 20 * 3_600_000
STARTS = [NOW - 600_000, 0, EARLY_MS, MIN_TS_MS, MAX_TS_MS - 10_000]
GOOD_NUMBERS = st.floats(-1e6, 1e6) | st.sampled_from([0.0, -0.0, 1e25, 3.0e38, -FLOAT32_MAX, 5e-324])


def iso(ms: int, minutes: int) -> str:
    """``ms`` as an ISO timestamp in local time at UTC offset ``minutes``."""
    local = datetime(1970, 1, 1) + timedelta(milliseconds=ms + minutes * 60_000)
    sign, (h, m) = "+" if minutes >= 0 else "-", divmod(abs(minutes), 60)
    return f"{local.isoformat(timespec='milliseconds')}{sign}{h:02d}:{m:02d}"


def ts_forms(ms: int) -> st.SearchStrategy:
    """The ways a message can say ``ms``: integer milliseconds where allowed, ISO with offsets that fit."""
    forms: list[object] = [iso(ms, m) for m in (0, 330, -720, 1439, -1439)
                           if MIN_TS_MS <= ms + m * 60_000 <= MAX_TS_MS]
    forms += [ms] if MIN_TS_MS <= ms <= MAX_TS_MS else []
    return st.sampled_from(forms)


@st.composite
def streams(draw) -> list[tuple[bytes | None, bytes]]:
    """One asset's readings, mostly a second apart, some repeated, late or after a gap; keyed by the
    asset, by nothing, or by another asset."""
    asset = draw(st.sampled_from(GOOD_IDS))
    t = draw(st.sampled_from(STARTS))
    out = []
    for _ in range(draw(st.integers(0, 10))):
        t += draw(st.sampled_from([1000, 1000, 1000, 0, 2500, -3000, 60_000]))
        doc = {"asset_id": asset, "ts": draw(ts_forms(t)), "values": {c: draw(GOOD_NUMBERS) for c in CHANNELS}}
        key = draw(st.sampled_from([asset.encode(), None, b"someone-else", b"\xff"]))
        out.append((key, json.dumps(doc).encode()))
    return out


@st.composite
def polls(draw) -> list[list[Polled]]:
    """Good streams and hostile records interleaved, on partitions chosen by key as Kafka does, cut
    into polls; sometimes the tail is delivered again, as after a crash before the commit."""
    records = [r for s in draw(st.lists(streams(), max_size=3)) for r in s]
    for hostile in draw(st.lists(st.tuples(keys, hostile_messages), max_size=12)):
        records.insert(draw(st.integers(0, len(records))), hostile)
    if draw(st.booleans()):
        records = [records[i] for i in draw(st.permutations(range(len(records))))]
    offsets: Counter[int] = Counter()
    polled = []
    for key, value in records:
        partition = zlib.crc32(key or b"") % 2
        polled.append(Polled("readings", partition, offsets[partition], key, value))
        offsets[partition] += 1
    cuts = sorted(draw(st.lists(st.integers(0, len(polled)), max_size=3)))
    bounds = [0, *cuts, len(polled)]
    out = [polled[a:b] for a, b in zip(bounds, bounds[1:])]
    if polled and draw(st.booleans()):
        out.append(polled[draw(st.integers(0, len(polled) - 1)):])
    return out


class Capture:
    """A producer that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, topic, key=None, value=None, headers=None, partition=None):
        self.sent.append((topic, key, value, headers, partition))


def check_step(out: StepOutput, poll: list[Polled], processor: Processor, waiting_before: int) -> None:
    """Every record of the poll is accounted for exactly once, and everything the poll became can be sent."""
    parsed = [parse_reading(r.value, r.key, channels=CHANNELS, now_ms=NOW) for r in poll]
    misplaced = [d for d in out.dead_letters if d.kind in ("late", "duplicate")]
    assert [(d.record, d.reason) for d in out.dead_letters if d.kind not in ("late", "duplicate")] == \
        [(r, p.reason) for r, p in zip(poll, parsed) if isinstance(p, Rejected)]
    accepted = {id(r) for r, p in zip(poll, parsed) if isinstance(p, Reading)}
    assert all(id(d.record) in accepted for d in misplaced)
    assert len({id(d.record) for d in out.dead_letters}) == len(out.dead_letters)
    assert all(d.kind in REJECT_KINDS and d.kind == reject_kind(d.reason) for d in out.dead_letters)
    batch = out.decisions.windows
    waiting = processor.windower.waiting()
    assert out.polled == len(poll)
    assert len(poll) == len(out.dead_letters) + out.replayed + batch.released + waiting - waiting_before
    partitions = {(r.topic, r.partition) for r in poll}
    assert out.offsets == {tp: max(r.offset for r in poll if (r.topic, r.partition) == tp) + 1 for tp in partitions}
    ids = {p.asset_id for p in parsed if isinstance(p, Reading)}
    assert set(out.owners) <= ids
    for event in out.events:
        assert event.asset_id in processor.windower.assets()
        assert decode_event(encode_event(event)) == event


def send_all(out: StepOutput, processor: Processor, owners: dict) -> None:
    """Hand the output to the real sinks, over a producer that only records."""
    dlq, events, changelog = Capture(), Capture(), Capture()
    DeadLetterSink(dlq, "readings.dlq").write(out)
    EventSink(events, "anomalies").write(out)
    ChangelogSink(changelog, "changelog", processor, owners).write(out)
    assert len(dlq.sent) == len(out.dead_letters) and len(events.sent) == len(out.events)
    assert all(dict(headers)["kind"].decode() in REJECT_KINDS for *_, headers, _ in dlq.sent)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(polled=polls())
def test_step_accounts_for_every_record(detector: Detector, polled: list[list[Polled]]) -> None:
    TRIED["step"] += sum(map(len, polled))
    processor = Processor(detector)
    owners: dict = {}
    delivered = dead = replayed = released = 0
    for i, poll in enumerate(polled):
        waiting = processor.windower.waiting()
        out = step(processor, poll, ParseRules(), NOW, now=float(i))
        owners.update(out.owners)
        check_step(out, poll, processor, waiting)
        send_all(out, processor, owners)
        delivered += len(poll)
        dead, replayed, released = dead + len(out.dead_letters), replayed + out.replayed, released + out.decisions.windows.released
    waiting = processor.windower.waiting()
    last = drain(processor)
    assert last.decisions.windows.released == waiting and processor.windower.waiting() == 0
    assert all(decode_event(encode_event(e)) == e for e in last.events)
    send_all(last, processor, owners)
    assert delivered == dead + replayed + released + last.decisions.windows.released


# 3. The service on the embedded broker.

def sample(strategy: st.SearchStrategy, n: int) -> list:
    """Up to ``n`` values of ``strategy``, the same ones on every run (hypothesis' generator, derandomized)."""
    drawn: list = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value) -> None:
        drawn.append(value)

    collect()
    return drawn


def good_stream(asset: str, start_ms: int, n: int, iso_offset: int | None = None) -> list[tuple[bytes, bytes]]:
    """``n`` valid readings a second apart, keyed by their asset; ``iso_offset`` writes ts as ISO in that offset (minutes)."""
    docs = ({"asset_id": asset, "ts": t if iso_offset is None else iso(t, iso_offset),
             "values": {"a": 1.0 + (i % 7) * 0.1, "b": -1.0}} for i, t in enumerate(range(start_ms, start_ms + n * 1000, 1000)))
    return [(asset.encode(), json.dumps(doc).encode()) for doc in docs]


@pytest.mark.integration
def test_the_service_on_the_broker_scores_or_dead_letters_every_hostile_record(service_settings, detector) -> None:
    settings_ = fresh(service_settings)
    now_ms = int(time.time() * 1000)
    good = [
        *good_stream("p1", now_ms - 3_600_000, 40),
        *good_stream("\u202e\U0001f680-pump", now_ms - 3_600_000, 30, iso_offset=330),
        *good_stream("epoch", 0, 20),
        *good_stream("year-one", EARLY_MS, 12, iso_offset=1439),  # valid ISO, before MIN_TS_MS in UTC
    ]
    hostile = [(key if key is not None or value is not None else b"k", value)  # Kafka needs one of the two
               for key, value in sample(st.tuples(keys, hostile_messages), 300)]
    rng = np.random.default_rng(7)
    records = list(good)
    for rec in hostile:  # hostile records anywhere, the good ones kept in order
        records.insert(int(rng.integers(0, len(records) + 1)), rec)

    producer = kafka.producer(settings_, max_request_size=2_000_000)
    futures = [producer.send(settings_.readings_topic, key=k, value=v) for k, v in records]
    producer.flush()
    producer.close()
    where = [(f.get(timeout=10).partition, f.get(timeout=10).offset) for f in futures]
    TRIED["broker"] += len(records)
    rejected = {w for w, (k, v) in zip(where, records)
                if isinstance(parse_reading(v, k, channels=CHANNELS, now_ms=now_ms), Rejected)}

    service = Service.on_kafka(settings_, detector)
    stop, failure = threading.Event(), []

    def serve() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # kept for the assertion below, which shows its traceback
            failure.append(exc)

    runner = threading.Thread(target=serve, daemon=True)
    runner.start()
    done = wait_for(lambda: failure or committed(settings_) >= len(records), 45)
    still_running = runner.is_alive()
    stop.set()
    runner.join(60)
    assert not failure, "".join(traceback.format_exception(failure[0]))
    assert done and still_running and not runner.is_alive()

    dead = read_all(settings_, settings_.dlq_topic, timeout_s=3)
    stats = service.stats
    assert committed(settings_) == len(records)  # nothing lost, nothing left behind
    assert stats.records == len(records) and stats.scored + stats.rejected == len(records)
    assert stats.rejected == len(dead)
    headers = [dict(r.headers) for r in dead]
    positions = [(int(h["source.partition"]), int(h["source.offset"])) for h in headers]
    assert len(set(positions)) == len(positions)  # each dead-lettered once
    assert all(h["kind"].decode() in REJECT_KINDS for h in headers)
    misplaced = {p for p, h in zip(positions, headers) if h["kind"] in (b"late", b"duplicate")}
    assert set(positions) - misplaced == rejected
    assert all(decode_event(r.value) for r in read_all(settings_, settings_.anomalies_topic, timeout_s=3))
