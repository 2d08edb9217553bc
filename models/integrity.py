"""A model version's integrity: the digests recorded when it is registered and checked on every
load, and its model's or scoring graph's fit to its own spec; a version that fails is refused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from sensorwatch.models.spec import DetectorSpec


class IntegrityError(ValueError):
    """A model version's files do not match what was recorded when it was registered, or its
    model does not fit its own spec: it is refused."""


DIGEST_TAG = "sensorwatch.digest"
# The exported scoring graph of a version (an artifact of its run) and its sha256.
ONNX_ARTIFACT = "scoring.onnx"
ONNX_DIGEST_TAG = "sensorwatch.onnx_digest"


def model_digest(model: Any, spec: DetectorSpec) -> str:
    """sha256 of the weights (shape, dtype and bytes of each) and the spec: what makes a version score
    as it does. Recorded as a version tag at registration and checked on every load."""
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode())
    for array in model.get_weights():
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_fit(model: Any, spec: DetectorSpec, what: str) -> None:
    """A model that does not take and give back windows of its spec's shape is refused."""
    expected = (spec.window, len(spec.channels))
    shapes = [tuple(model.input_shape[1:]), tuple(model.output_shape[1:])]
    if any(shape != expected for shape in shapes):
        raise IntegrityError(
            f"{what} does not fit its spec: the model maps {shapes[0]} to {shapes[1]}, "
            f"the spec says windows of {expected}; refusing it"
        )


def checked_scorer(scorer: Any, spec: DetectorSpec, what: str) -> Any:
    """An ONNX scorer whose graph does not take windows of its spec's shape is refused."""
    expected = (spec.window, len(spec.channels))
    if (scorer.window, scorer.channels) != expected:
        raise IntegrityError(
            f"{what} does not fit its spec: its scoring graph takes windows of "
            f"{(scorer.window, scorer.channels)}, the spec says {expected}; refusing it"
        )
    return scorer
