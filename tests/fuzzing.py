"""What the fuzz tests draw: random bytes, random JSON, reading-shaped messages with extreme
numbers, odd timestamps and odd unicode (``hypothesis`` strategies), and the parser's contract for
one input (``check_outcome``).

``TRIED`` counts the inputs each test ran; the ``fuzz_inputs`` fixture (conftest) prints the counts
when a test module ends (``-s``). No example database is kept (``database=None``): a failure is
told with its shrunk example.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sensorwatch.schemas.readings import FLOAT32_MAX, MAX_ASSET_ID, MAX_TS_MS, MIN_TS_MS, Limits
from sensorwatch.schemas.records import REJECT_KINDS, Reading, Rejected

NOW = 1_700_000_000_000  # the clock of the in-memory tests: 2023-11-14T22:13:20Z
CHANNELS = ("a", "b")
# The parser's limits as the default settings give them (Settings.limits()).
LIMITS = Limits(max_bytes=65_536, max_future_ms=300_000)
# Kinds the parser may give: late and duplicate are the windower's, invalid is the unclassified fallback.
PARSE_KINDS = frozenset(REJECT_KINDS) - {"late", "duplicate", "invalid"}
TRIED: Counter[str] = Counter()

PARSER = settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEAVY = settings(PARSER, max_examples=300)


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
    1e308,
    -1e308,
    1e25,
    -1e25,
    3.5e38,
    -3.5e38,
    FLOAT32_MAX,
    -FLOAT32_MAX,
    3.4028235677973366e38,
    5e-324,
    0.0,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    -(10**400),
    2**63,
    2**63 - 1,
    -(2**63),
    2**64,
    10**30,
]
NUMBER_LITERALS = [
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1E400",
    "-0",
    "-0.0",
    "0e-99999",
    "1" + "0" * 400,
    "1" + "0" * 5000,
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
    "1e",
    "--1",
    "1_000",
    "nan",
    "inf",
]
numbers = st.one_of(
    st.integers(),
    st.floats(),
    st.sampled_from(EXTREME_NUMBERS),
    st.sampled_from(NUMBER_LITERALS).map(Raw),
)

ODD_STRINGS = [
    "",
    " ",
    "pump-7",
    "a" * MAX_ASSET_ID,
    "a" * (MAX_ASSET_ID + 1),
    "é" * MAX_ASSET_ID,
    "\U0001f680" * 40,
    "\u202epump-7",
    "pump\u200f7",
    "\ufeffpump",
    "pump\n7",
    "\x00",
    "\x1b[31mred",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ud800",
    "\udfff",
    "\ud83d\ude80",
    "a.b",
    "x" * 5000,
    "asset_id",
    "ts",
    "values",
]
ESCAPES = [
    "\\ud800",
    "\\udbff\\udfff",
    "\\ud83d\\ude80",
    "\\ude80\\ud83d",
    "\\u0000",
    "\\u001f",
    "\\u0085",
    "\\u2028",
    "\\u200f",
    "\\n",
    "\\t",
    "\\/",
    "\\\\",
    '\\"',
    "\\x41",
    "\\u12",
    "\\U0001F680",
    "\\",
    "\t",
    "\n",
]
escaped_strings = st.lists(
    st.sampled_from(ESCAPES) | st.text(max_size=3).map(lambda s: json.dumps(s)[1:-1]),
    max_size=6,
).map(lambda parts: Raw('"' + "".join(parts) + '"'))
strings = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(st.characters(exclude_categories=()), max_size=20),
    escaped_strings,
)
keys = st.one_of(
    st.none(),
    st.binary(max_size=20),
    st.sampled_from([b"pump-7", b"p1", b"\xff\xfe", b"", "\U0001f680".encode()]),
)

# Valid by the schema, even where odd.
valid_ids = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\u2028\u2029"),
    min_size=1,
    max_size=MAX_ASSET_ID,
)
valid_numbers = st.floats(-FLOAT32_MAX, FLOAT32_MAX) | st.integers(-(2**63), 2**63 - 1)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, strings),
    lambda kids: (
        st.lists(kids, max_size=4) | st.lists(st.tuples(strings, kids), max_size=4).map(Pairs)
    ),
    max_leaves=20,
)

ISO_EDGES = [
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T12:00:00.5+23",
    "0001-01-01 00:00+0100",
    "0001-01-01T00:00:00Z",
    "0001-01-01 00:00",
    "0000-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999Z",
    "9999-12-31T23:59:59-23:59",
    "10000-01-01T00:00:00Z",
    "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z",
    "2024-02-30T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00.0000001Z",
    "2023-11-14T22:13:20+2359",
    "2023-11-14T22:13:20-00",
    "2023-11-14T24:00:00Z",
    "2023-11-14T22:13:60Z",
    "2023-11-14T22:13:20Z\n",
    " 2023-11-14T22:13:20Z",
    "\uff12\uff10\uff12\uff13-11-14T22:13:20Z",
    "2023-11-14",
    "yesterday",
    "",
]
INT_TIMESTAMPS = [
    0,
    -1,
    MIN_TS_MS,
    MIN_TS_MS - 1,
    MAX_TS_MS,
    MAX_TS_MS + 1,
    NOW,
    NOW + 300_000,
    NOW + 300_001,
    2**63,
    2**63 - 1,
    -(2**63),
    2**64,
    10**30,
    10**400,
]


@st.composite
def iso_texts(draw) -> str:
    """ISO-8601-looking text, each part drawn a little past its range."""
    year, month, day = (
        draw(st.integers(0, 10_000)),
        draw(st.integers(0, 13)),
        draw(st.integers(0, 32)),
    )
    hour, minute, second = (
        draw(st.integers(0, 24)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 60)),
    )
    sep = draw(st.sampled_from("T t_"))
    frac = draw(st.sampled_from(["", ".5", ".123", ".123456789", ".1234567890"]))
    tz = draw(
        st.sampled_from(
            ["", "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+2359", "+23", "-12"]
        )
    )
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{frac}{tz}"


timestamps = st.one_of(
    st.sampled_from(INT_TIMESTAMPS),
    st.integers(),
    st.integers(MIN_TS_MS - 10, MAX_TS_MS + 10),
    st.sampled_from([1.0, 1.5, 1e308, -0.0, float(NOW), NOW + 0.5, math.nan, math.inf]),
    st.sampled_from(ISO_EDGES),
    iso_texts(),
    numbers,
    json_values,
)
channel_names = st.one_of(
    st.sampled_from(CHANNELS + ("", "a.b", "\x00", "\ud800", "\U0001f680", "x" * 200, "c")), strings
)
values_objects = st.one_of(
    st.fixed_dictionaries({c: numbers for c in CHANNELS}),
    st.lists(st.tuples(channel_names, st.one_of(numbers, json_values)), max_size=6).map(Pairs),
    json_values,
)


@st.composite
def reading_docs(draw) -> Pairs:
    """A reading's three fields, each possibly hostile, then dropped, repeated, added to or reordered."""
    doc = Pairs(
        [
            ("asset_id", draw(valid_ids | strings)),
            (
                "ts",
                draw(
                    st.sampled_from(ISO_EDGES)
                    | st.sampled_from(INT_TIMESTAMPS)
                    | iso_texts()
                    | timestamps
                ),
            ),
            (
                "values",
                draw(st.fixed_dictionaries({c: valid_numbers for c in CHANNELS}) | values_objects),
            ),
        ]
    )
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["drop", "repeat", "extra"]))
        if what == "drop" and doc:
            doc.pop(draw(st.integers(0, len(doc) - 1)))
        elif what == "repeat":  # a second asset_id, say, that disagrees with the first
            name = draw(st.sampled_from(["asset_id", "ts", "values"]))
            doc.append(
                (
                    name,
                    draw({"asset_id": strings, "ts": timestamps, "values": values_objects}[name]),
                )
            )
        else:
            doc.append(
                (
                    draw(st.sampled_from(["extra", "Asset_id", "ts ", ""]) | strings),
                    draw(json_values),
                )
            )
    order = draw(st.permutations(range(len(doc))))
    return Pairs(doc[i] for i in order)


OFFSETS = [
    None,
    UTC,
    timezone(timedelta(hours=23, minutes=59)),
    timezone(-timedelta(hours=23, minutes=59)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(-timedelta(hours=12)),
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@st.composite
def valid_timestamps(draw) -> tuple[object, int]:
    """(ts as the message writes it, its epoch milliseconds) within the schema's range and not in the future."""
    if draw(st.booleans()):
        ms = draw(st.integers(MIN_TS_MS, NOW) | st.sampled_from([MIN_TS_MS, 0, NOW]))
        return ms, ms
    moment = draw(
        st.datetimes(datetime(1, 1, 1), datetime(2023, 11, 13), timezones=st.sampled_from(OFFSETS))
    )
    spec = draw(st.sampled_from(["seconds", "milliseconds", "microseconds"]))
    moment = moment.replace(
        microsecond={"seconds": 0, "milliseconds": moment.microsecond // 1000 * 1000}.get(
            spec, moment.microsecond
        )
    )
    ms = ((moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - EPOCH) // timedelta(
        milliseconds=1
    )
    if not MIN_TS_MS <= ms <= NOW:
        return draw(valid_timestamps())
    text = moment.isoformat(sep=draw(st.sampled_from("T ")), timespec=spec)
    return (text.replace("+00:00", "Z") if draw(st.booleans()) else text), ms


@st.composite
def valid_readings(draw) -> tuple[bytes, Reading]:
    """A valid message and the reading it says."""
    asset_id = draw(valid_ids)
    ts, ms = draw(valid_timestamps())
    names = draw(
        st.lists(
            st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    values = {name: draw(valid_numbers) for name in names}
    raw = json.dumps(
        {"asset_id": asset_id, "ts": ts, "values": values}, ensure_ascii=draw(st.booleans())
    ).encode()
    return raw, Reading(asset_id, ms, {name: float(v) for name, v in values.items()})


hostile_messages = st.one_of(
    encoded(reading_docs()),
    encoded(json_values),
    st.binary(max_size=200),
    valid_readings().map(lambda pair: pair[0]),
    st.none(),
    st.just(b""),
)


def check_outcome(
    result: object,
    raw: bytes | None,
    key: bytes | None,
    now_ms: int,
    max_future_ms: int = 300_000,
    channels: frozenset[str] | None = None,
) -> None:
    """The parser's contract for one input: a usable reading, or a one-line reason of a bounded kind."""
    assert type(result) in (Reading, Rejected), result
    if isinstance(result, Rejected):
        assert type(result.reason) is str and result.reason.strip()
        assert not any(
            unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in result.reason
        ), result.reason
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
