"""Property-based fuzz tests of the parser: no input gets past it as an exception.

The parser must answer each input (``fuzzing``: random bytes, random JSON, reading-shaped messages
with extreme numbers, odd timestamps and odd unicode) with exactly one ``Reading`` that the model
can use or one ``Rejected`` whose reason is a single line with a bounded kind.
"""

from __future__ import annotations

import json

import pytest
from fuzzing import (
    CHANNELS,
    HEAVY,
    LIMITS,
    NOW,
    PARSER,
    TRIED,
    check_outcome,
    encoded,
    hostile_messages,
    json_values,
    keys,
    reading_docs,
    valid_readings,
)
from hypothesis import given
from hypothesis import strategies as st

from sensorwatch.schemas.reading_encoder import encode_reading
from sensorwatch.schemas.readings import Limits, parse_batch, parse_reading
from sensorwatch.schemas.records import Reading, Rejected

pytestmark = pytest.mark.usefixtures("fuzz_inputs")


@PARSER
@given(raw=st.one_of(st.binary(max_size=300), st.none()), key=keys)
def test_any_bytes_get_one_outcome(raw: bytes | None, key: bytes | None) -> None:
    TRIED["any_bytes"] += 1
    check_outcome(parse_reading(raw, key, limits=LIMITS, now_ms=NOW), raw, key, NOW)


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
    check_outcome(parse_reading(raw, key, limits=LIMITS, now_ms=NOW), raw, key, NOW)


@PARSER
@given(raw=encoded(json_values), key=keys)
def test_any_json_gets_one_outcome(raw: bytes, key: bytes | None) -> None:
    TRIED["any_json"] += 1
    check_outcome(parse_reading(raw, key, limits=LIMITS, now_ms=NOW), raw, key, NOW)


@PARSER
@given(
    raw=encoded(reading_docs()),
    key=keys,
    channels=st.sampled_from([None, frozenset(CHANNELS)]),
    max_future_ms=st.sampled_from([0, 300_000, 10**12]),
)
def test_reading_shaped_messages_get_one_outcome(
    raw: bytes, key: bytes | None, channels, max_future_ms: int
) -> None:
    TRIED["reading_shaped"] += 1
    result = parse_reading(
        raw, key, limits=Limits(LIMITS.max_bytes, max_future_ms), channels=channels, now_ms=NOW
    )
    check_outcome(result, raw, key, NOW, max_future_ms, channels)


NESTINGS = {
    "array": lambda d: "[" * d + "1" + "]" * d,
    "object": lambda d: '{"a":' * d + "1" + "}" * d,
    "in_values": lambda d: '{"asset_id":"p","ts":0,"values":{"a":' + "[" * d + "]" * d + "}}",
    "in_asset_id": lambda d: (
        '{"asset_id":' + '{"a":' * d + "1" + "}" * d + ',"ts":0,"values":{"a":1}}'
    ),
    "in_ts": lambda d: '{"asset_id":"p","ts":' + "[" * d + "]" * d + ',"values":{"a":1}}',
}


@HEAVY
@given(
    depth=st.integers(1, 20_000) | st.sampled_from([127, 128, 999, 1000, 1024, 1025, 10_000]),
    shape=st.sampled_from(sorted(NESTINGS)),
    closed=st.booleans(),
    max_bytes=st.sampled_from([65_536, 2**20]),
)
def test_deep_nesting_gets_one_outcome(
    depth: int, shape: str, closed: bool, max_bytes: int
) -> None:
    TRIED["deep_nesting"] += 1
    text = NESTINGS[shape](depth)
    raw = (text if closed else text[: len(text) // 2]).encode()
    result = parse_reading(raw, limits=Limits(max_bytes, LIMITS.max_future_ms), now_ms=NOW)
    check_outcome(result, raw, None, NOW)
    assert isinstance(result, Rejected)


@HEAVY
@given(
    channels=st.integers(0, 20_000),
    id_length=st.integers(0, 200_000) | st.sampled_from([128, 129, 65_536]),
    max_bytes=st.sampled_from([65_536, 2**20, 2**22]),
    value=st.sampled_from([1.0, 3.5e38, "x" * 50]),
)
def test_huge_messages_get_one_outcome(
    channels: int, id_length: int, max_bytes: int, value: object
) -> None:
    TRIED["huge"] += 1
    doc = {
        "asset_id": "p" * id_length,
        "ts": NOW,
        "values": {f"c{i}": value for i in range(channels)},
    }
    raw = json.dumps(doc).encode()
    result = parse_reading(raw, limits=Limits(max_bytes, LIMITS.max_future_ms), now_ms=NOW)
    check_outcome(result, raw, None, NOW)
    if len(raw) > max_bytes:
        assert isinstance(result, Rejected) and result.kind == "oversized"


@PARSER
@given(message=valid_readings(), key=keys)
def test_valid_readings_are_accepted_as_sent(
    message: tuple[bytes, Reading], key: bytes | None
) -> None:
    TRIED["valid"] += 1
    raw, expected = message
    result = parse_reading(raw, key, limits=LIMITS, now_ms=NOW)
    assert result == expected
    check_outcome(result, raw, key, NOW)
    assert parse_reading(encode_reading(result), limits=LIMITS, now_ms=NOW) == result


@HEAVY
@given(records=st.lists(st.tuples(keys, hostile_messages), max_size=30))
def test_a_batch_gets_one_outcome_per_record_in_order(
    records: list[tuple[bytes | None, bytes | None]],
) -> None:
    TRIED["batch"] += len(records)
    oks, errs = parse_batch(records, limits=LIMITS, channels=CHANNELS, now_ms=NOW)
    one_by_one = [
        parse_reading(value, key, limits=LIMITS, channels=CHANNELS, now_ms=NOW)
        for key, value in records
    ]
    assert len(oks) + len(errs) == len(records)
    assert oks == [r for r in one_by_one if isinstance(r, Reading)]
    assert errs == [r for r in one_by_one if isinstance(r, Rejected)]
    for (key, value), result in zip(records, one_by_one):
        check_outcome(result, value, key, NOW, channels=frozenset(CHANNELS))
