"""Message schemas: the fast reading validator, the event codec, and their agreement with the JSON Schemas."""

from __future__ import annotations

import json
import re

import orjson
import pytest
from jsonschema import Draft202012Validator

from sensorwatch.schemas.events import decode_event, encode_event
from sensorwatch.schemas.files import FORMAT_CHECKER, load_schema, schema_validator
from sensorwatch.schemas.reading_encoder import encode_reading
from sensorwatch.schemas.readings import ISO_PATTERN, Limits, parse_batch, parse_reading
from sensorwatch.schemas.records import AnomalyEvent, Reading, Rejected

NOW = 1_911_686_400_000  # 2030-07-31T00:00:00Z: a fixed clock for the future-time rule
LIMITS = Limits(max_bytes=65_536, max_future_ms=300_000)  # as the default settings give them
GOOD = b'{"asset_id": "pump-7", "ts": 1714564800250, "values": {"flow": 12.5, "pressure": 3}}'


def msg(**fields: object) -> bytes:
    """A reading message: a good one with ``fields`` replaced (or removed, when given ...)."""
    doc: dict[str, object] = orjson.loads(GOOD)
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def reason(raw: bytes | None, **kwargs: object) -> str:
    result = parse_reading(raw, limits=LIMITS, now_ms=NOW, **kwargs)
    assert isinstance(result, Rejected), result
    return result.reason


def event(**changes: object) -> AnomalyEvent:
    fields: dict[str, object] = dict(
        asset_id="pump-7",
        window_start="2024-05-01T12:00:00.000Z",
        window_end="2024-05-01T12:00:29.000Z",
        score=0.84,
        threshold=0.31,
        contributions={"flow": 0.71, "pressure": 0.13},
        model_version="4",
        windows=3,
        detected_at="2024-05-01T12:00:30.120Z",
    )
    fields.update(changes)
    return AnomalyEvent(**fields)  # type: ignore[arg-type]


def test_good_message_parses_with_int_values_as_floats() -> None:
    expected = Reading("pump-7", 1714564800250, {"flow": 12.5, "pressure": 3.0})
    assert parse_reading(GOOD, limits=LIMITS, now_ms=NOW) == expected
    assert type(parse_reading(GOOD, limits=LIMITS, now_ms=NOW).values["pressure"]) is float


@pytest.mark.parametrize(
    ("ts", "ts_ms"),
    [
        ("2024-05-01T12:00:00.250Z", 1714564800250),
        ("2024-05-01T14:00:00.250+02:00", 1714564800250),
        ("2024-05-01T12:00:00.250", 1714564800250),  # naive is UTC
        ("2024-05-01 12:00:00.250-0000", 1714564800250),
        ("2024-05-01T12:00Z", 1714564800000),
        (
            "2024-05-01T12:00:00.2509999Z",
            1714564800250,
        ),  # sub-millisecond digits are cut, not rounded
        (1714564800250, 1714564800250),
        (1714564800250.0, 1714564800250),
    ],
)
def test_timestamp_forms(ts: object, ts_ms: int) -> None:
    assert parse_reading(msg(ts=ts), limits=LIMITS, now_ms=NOW).ts_ms == ts_ms


BAD = [
    (None, "empty message"),
    (b"", "empty message"),
    (b"{" + b" " * 70_000 + b"}", "oversized: 70002 bytes > 65536"),
    (
        b'{"asset_id": "pump-7", ',
        "malformed JSON: Expecting property name enclosed in double quotes: line 1 column 24 (char 23)",
    ),
    (
        b"\xff",
        "malformed JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
    ),
    (b"[1, 2]", "not an object: got list"),
    (msg(ts=...), "missing field 'ts'"),
    (msg(foo=1), "unexpected field 'foo'"),
    (msg(foo=1, bar=2), "unexpected fields 'foo', 'bar'"),
    (msg(asset_id=""), "asset_id: must be a non-empty string"),
    (msg(asset_id=7), "asset_id: must be a non-empty string, got integer"),
    (msg(asset_id="a" * 129), "asset_id: 129 characters > 128"),
    (msg(ts="yesterday"), "ts: unparsable timestamp 'yesterday'"),
    (
        msg(ts="2024-02-30T00:00:00Z"),
        "ts: unparsable timestamp '2024-02-30T00:00:00Z' (day is out of range for month)",
    ),
    (msg(ts=True), "ts: must be an ISO-8601 string or integer epoch milliseconds, got boolean"),
    (msg(ts=1.5), "ts: epoch milliseconds must be an integer, got 1.5"),
    (msg(ts=10**16), "ts: epoch milliseconds 10000000000000000 out of range"),
    (msg(ts="2031-01-01T00:00:00Z"), "ts: 2031-01-01T00:00:00Z is 154 days in the future"),
    (
        msg(ts=NOW + 3 * 3_600_000),
        "ts: 1911697200000 (2030-07-31T03:00:00.000Z) is 3 h in the future",
    ),
    (
        msg(ts=NOW + 301_500),
        "ts: 1911686701500 (2030-07-31T00:05:01.500Z) is 301.5 s in the future",
    ),
    (
        b'{"asset_id": "p", "ts": 0, "values": {"pressure": NaN}}',
        "values.pressure: not a finite number (NaN)",
    ),
    (
        b'{"asset_id": "p", "ts": 0, "values": {"a": -Infinity}}',
        "values.a: not a finite number (-Infinity)",
    ),
    (
        b'{"asset_id": "p", "ts": 0, "values": {"a": 1e999}}',
        "values.a: not a finite number (Infinity)",
    ),
    (msg(values={"pressure": "3"}), "values.pressure: must be a number, got string"),
    (msg(values={"pressure": True}), "values.pressure: must be a number, got boolean"),
    (msg(values={"pressure": None}), "values.pressure: must be a number, got null"),
    (msg(values=[1.0]), "values: must be an object, got list"),
    (msg(values={}), "values: must have at least one channel"),
    (msg(values={"": 1.0}), "values: empty channel name"),
    (msg(values={"a\nb": "x"}), "values.'a\\nb': must be a number, got string"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD, ids=[r for _, r in BAD])
def test_rejection_reasons(raw: bytes | None, expected: str) -> None:
    assert reason(raw) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"flow": 1, "pressure": 2, "foo": 3}, "values: unknown channel 'foo'"),
        ({"pressure": 2}, "values: missing channel 'flow'"),
        ({"temp": 2}, "values: unknown channel 'temp'"),
    ],
)
def test_channels_must_match_exactly(values: dict[str, float], expected: str) -> None:
    assert reason(msg(values=values), channels=["flow", "pressure"]) == expected


def test_exact_channels_pass() -> None:
    assert isinstance(
        parse_reading(GOOD, limits=LIMITS, now_ms=NOW, channels={"pressure", "flow"}), Reading
    )


def test_key_is_kept_on_rejects_and_never_compared() -> None:
    assert parse_reading(b"[]", b"pump-7", limits=LIMITS).key == b"pump-7"
    assert isinstance(parse_reading(GOOD, b"other-asset", limits=LIMITS, now_ms=NOW), Reading)


def test_orjson_only_refusals_stay_malformed() -> None:
    lone_surrogate = msg(asset_id="\ud800")
    assert reason(lone_surrogate).startswith("malformed JSON: ")


def test_deep_nesting_is_rejected_not_raised() -> None:
    assert reason(b"[" * 30_000 + b"]" * 30_000).startswith("malformed JSON: ")


def test_default_clock_rejects_the_far_future() -> None:
    assert "in the future" in parse_reading(msg(ts="9999-01-01T00:00:00Z"), limits=LIMITS).reason


def test_reasons_are_single_lines() -> None:
    assert all("\n" not in reason(raw) for raw, _ in BAD)


def test_batch_splits_in_order_and_keeps_keys() -> None:
    records = [(b"a", GOOD), (b"b", b"[]"), (b"c", msg(asset_id="p2")), (None, None)]
    oks, errs = parse_batch(records, limits=LIMITS, now_ms=NOW)
    assert [r.asset_id for r in oks] == ["pump-7", "p2"]
    assert [(e.key, e.reason) for e in errs] == [
        (b"b", "not an object: got list"),
        (None, "empty message"),
    ]


def test_reading_round_trip() -> None:
    reading = Reading("pump-7", 1714564800250, {"flow": 12.5, "pressure": -0.001})
    assert parse_reading(encode_reading(reading), limits=LIMITS, now_ms=NOW) == reading


def test_encode_reading_refuses_nan() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        encode_reading(Reading("pump-7", 0, {"flow": float("nan")}))


def test_event_round_trip() -> None:
    assert decode_event(encode_event(event())) == event()


def test_encoded_event_matches_schema_with_formats() -> None:
    assert schema_validator("anomaly").is_valid(orjson.loads(encode_event(event())))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"windows": 0}, "$.windows: 0 is less than the minimum of 1"),
        ({"window_end": "soon"}, "$.window_end: 'soon' is not a 'date-time'"),
        (
            {"detected_at": "2024-02-30T00:00:00Z"},
            "$.detected_at: '2024-02-30T00:00:00Z' is not a 'date-time'",
        ),
        ({"score": "high"}, "$.score: 'high' is not of type 'number'"),
    ],
)
def test_decode_event_names_the_bad_field(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        decode_event(orjson.dumps(event(**changes).to_dict()))


def test_decode_event_rejects_extra_and_malformed() -> None:
    with pytest.raises(ValueError, match="Additional properties"):
        decode_event(orjson.dumps({**event().to_dict(), "x": 1}))
    with pytest.raises(ValueError, match="malformed JSON"):
        decode_event(b"{")


def test_encode_event_refuses_nan() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        encode_event(event(score=float("nan")))


@pytest.mark.parametrize("name", ["reading", "anomaly"])
def test_schema_files_load_and_are_valid_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="unknown schema 'x'"):
        load_schema("x")


def test_schema_and_validator_share_the_timestamp_pattern() -> None:
    assert load_schema("reading")["properties"]["ts"]["oneOf"][0]["pattern"] == ISO_PATTERN


def test_schema_examples_parse() -> None:
    for example in load_schema("reading")["examples"]:
        assert isinstance(parse_reading(orjson.dumps(example), limits=LIMITS, now_ms=NOW), Reading)


AGREEMENT = [
    (GOOD, True),
    (msg(asset_id="pump\n7 level=ERROR"), False),
    (msg(asset_id="pump\u001b[31m"), False),
    (msg(asset_id="pump\u2028x"), False),
    (msg(asset_id="pompe-é-7 ✓"), True),
    (b'{"asset_id": "p", "ts": 0, "values": {"a": 3.4e38}}', True),
    (b'{"asset_id": "p", "ts": 0, "values": {"a": 3.5e38}}', False),
    (b'{"asset_id": "p", "ts": 0, "values": {"a": -1e39}}', False),
    (b'{"asset_id": "p", "ts": 0, "values": {"a": 1e308}}', False),
    (msg(ts="2024-05-01T12:00:00Z"), True),
    (msg(ts="2024-05-01T12:00:00.123456789+05:30"), True),
    (msg(ts="2024-05-01 12:00"), True),
    (msg(ts="2024-05-01T12:00:00+01"), True),
    (msg(ts=0), True),
    (msg(ts=-1000), True),
    (msg(ts=1.0), True),
    (msg(asset_id="a" * 128), True),
    (msg(values={"x": 3e38, "y": -0.0, "z": 10**30}), True),  # extreme, but float32 holds them
    (msg(ts="2024-05-01"), False),
    (msg(ts="20240501T120000Z"), False),
    (msg(ts="2024-05-01T12:00:00z"), False),
    (msg(ts="2024-13-01T12:00:00Z"), False),
    (msg(ts="2024-05-01T24:00:00Z"), False),
    (msg(ts="0000-01-01T00:00:00Z"), False),
    (msg(ts="2024-05-01T12:00:60Z"), False),
    (msg(ts=1.5), False),
    (msg(ts=10**16), False),
    (msg(ts=False), False),
    (msg(ts=None), False),
    (msg(asset_id=""), False),
    (msg(asset_id="a" * 129), False),
    (msg(asset_id=None), False),
    (msg(values={}), False),
    (msg(values={"": 1}), False),
    (msg(values={"x": True}), False),
    (msg(values={"x": "1"}), False),
    (msg(values={"x": [1]}), False),
    (msg(values=None), False),
    (msg(values=...), False),
    (msg(extra=1), False),
    (b'{"asset_id": "p", "ts": 0, "values": {"x": NaN}}', False),
    (b'{"asset_id": "p", "ts": 0, "values": {"x": Infinity}}', False),
    (b"[]", False),
    (b'"text"', False),
    (b"null", False),
]


def schema_accepts(raw: bytes) -> bool:
    """Whether a strict JSON reader plus the reading schema accept ``raw``."""

    def refuse(literal: str) -> object:
        raise ValueError(f"{literal} is not JSON")

    try:
        doc = json.loads(raw, parse_constant=refuse)
    except ValueError:
        return False
    return Draft202012Validator(load_schema("reading"), format_checker=FORMAT_CHECKER).is_valid(doc)


@pytest.mark.parametrize(("raw", "valid"), AGREEMENT, ids=[r.decode()[:60] for r, _ in AGREEMENT])
def test_schema_and_fast_validator_agree(raw: bytes, valid: bool) -> None:
    assert schema_accepts(raw) is valid
    assert isinstance(parse_reading(raw, limits=LIMITS, now_ms=NOW), Reading) is valid


def test_every_rejection_has_a_kind_from_a_fixed_set() -> None:
    from sensorwatch.schemas.records import REJECT_KINDS

    samples = {
        b"": "empty",
        b"x" * 70_000: "oversized",
        b"{oops": "malformed_json",
        b"[]": "not_object",
        msg(ts=...): "fields",
        msg(asset_id="a\nb"): "asset_id",
        msg(ts="soon"): "ts",
        msg(ts=NOW + 10**9): "future",
        msg(values={"x": "1"}): "values",
    }
    for raw, kind in samples.items():
        assert parse_reading(raw, limits=LIMITS, now_ms=NOW).kind == kind, raw[:60]
    assert parse_reading(GOOD, limits=LIMITS, now_ms=NOW, channels={"nope"}).kind == "channels"
    assert set(samples.values()) | {"channels"} <= set(REJECT_KINDS)
