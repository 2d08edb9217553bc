"""A `Reading` as the bytes of a readings-topic message: what replay and the benchmarks send, and
what the parser in ``sensorwatch.schemas.readings`` reads back."""

from __future__ import annotations

from math import isfinite

import orjson

from sensorwatch.schemas.records import Reading


def encode_reading(reading: Reading) -> bytes:
    """The message bytes of ``reading``, with ``ts`` as integer epoch milliseconds.

    >>> encode_reading(Reading("pump-7", 0, {"flow": 1.5}))
    b'{"asset_id":"pump-7","ts":0,"values":{"flow":1.5}}'
    """
    # orjson would write NaN as null, a message no consumer accepts: fail at the producer instead.
    if not all(map(isfinite, reading.values.values())):
        raise ValueError(
            f"reading of {reading.asset_id!r} at {reading.ts_ms} has a non-finite value"
        )
    doc = {"asset_id": reading.asset_id, "ts": reading.ts_ms, "values": reading.values}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
