"""Anomaly events as JSON: the value of a record on the anomalies topic, and back.

Encoding is on the service's path and only refuses non-finite numbers; decoding serves readers
of the topic (review, tests, other services) and checks the message against
``anomaly.schema.json`` with jsonschema.

>>> event = AnomalyEvent("pump-7", "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:29.000Z",
...                      0.84, 0.31, {"flow": 0.71}, "4", windows=3, detected_at="2024-05-01T12:00:30.120Z")
>>> encode_event(event)[:40]
b'{"asset_id":"pump-7","window_start":"202'
>>> decode_event(encode_event(event)) == event
True
"""

from __future__ import annotations

from math import isfinite

import orjson
from jsonschema.exceptions import best_match

from sensorwatch.schemas.files import schema_validator
from sensorwatch.schemas.records import AnomalyEvent


def encode_event(event: AnomalyEvent) -> bytes:
    """The message bytes of ``event``; raises ValueError on a NaN or infinite number."""
    # orjson would write NaN as null, which breaks the schema for every reader downstream.
    numbers = (event.score, event.threshold, event.margin, *event.contributions.values())
    if not all(map(isfinite, numbers)):
        raise ValueError(
            f"anomaly event of {event.asset_id!r}: non-finite score, threshold or contribution"
        )
    return orjson.dumps(
        {**event.to_dict(), "duration_s": event.duration_s}, option=orjson.OPT_SERIALIZE_NUMPY
    )


def decode_event(data: bytes) -> AnomalyEvent:
    """The `AnomalyEvent` in ``data``; raises ValueError naming the first field that breaks the schema.

    >>> decode_event(b'{"asset_id": "pump-7"}')
    Traceback (most recent call last):
    ...
    ValueError: $: 'window_start' is a required property
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"malformed JSON: {error}") from None
    problem = best_match(schema_validator("anomaly").iter_errors(doc))
    if problem is not None:
        raise ValueError(f"{problem.json_path}: {problem.message}")
    return AnomalyEvent(
        asset_id=doc["asset_id"],
        window_start=doc["window_start"],
        window_end=doc["window_end"],
        score=float(doc["score"]),
        threshold=float(doc["threshold"]),
        contributions={name: float(share) for name, share in doc["contributions"].items()},
        model_version=doc["model_version"],
        windows=int(doc["windows"]),
        detected_at=doc["detected_at"],
        kind=doc["kind"],
        event_id=doc["event_id"],
        margin=float(doc.get("margin", 0.0)),
    )
