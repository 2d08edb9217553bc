"""Per-asset state as bytes, for the changelog: plain values, exact arrays, no code.

A snapshot is JSON (orjson) in which numpy arrays travel as their raw bytes (base64, with dtype
and shape) and non-finite floats by name, so a restored asset holds bit for bit what it held.
Nothing is unpickled: a record on the changelog topic can only ever become data.

>>> saved = {"ring": np.arange(6, dtype=np.float32).reshape(3, 2), "peak": -np.inf, "hits": 2, "ts": None}
>>> back = decode(encode(saved))
>>> back["ring"].dtype, back["ring"].tolist(), back["peak"], back["hits"], back["ts"]
(dtype('float32'), [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], -inf, 2, None)
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import orjson

FORMAT = 1
_DTYPES = {"float32", "float64", "int64", "bool"}


class StateError(ValueError):
    """A changelog record that is not a snapshot this version can read."""


def encode(state: dict[str, Any]) -> bytes:
    return orjson.dumps({"format": FORMAT, "state": _plain(state)})


def decode(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"not a state snapshot: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateError(
            f"unknown state format {doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r}"
        )
    return _typed(doc["state"])


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {
            "__array__": str(value.dtype),
            "shape": list(value.shape),
            "data": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode(),
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return {"__float__": repr(float(value))}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            if value["__array__"] not in _DTYPES:
                raise StateError(f"unexpected array type {value['__array__']!r}")
            raw = base64.b64decode(value["data"])
            return np.frombuffer(raw, value["__array__"]).reshape(value["shape"]).copy()
        if "__float__" in value:
            return float(value["__float__"])
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value
