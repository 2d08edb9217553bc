"""A loaded detector: its spec and the scorer the service scores with, either the version's
exported scoring graph in ONNX Runtime (``OnnxScorer``: no TensorFlow or Keras is imported) or
the Keras model through the compiled forward pass (``sensorwatch.models.compiled``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sensorwatch.models.change import window_change
from sensorwatch.models.spec import Z_LIMIT, DetectorSpec
from sensorwatch.models.thresholds import Threshold, threshold_from_dict

RUNTIMES = ("onnx", "keras")
CHUNK = 512  # windows per call of the ONNX session: bounded memory for a large backlog


def onnx_digest(graph: bytes) -> str:
    """sha256 of an exported scoring graph: recorded at registration and checked on every load."""
    return hashlib.sha256(graph).hexdigest()


class OnnxScorer:
    """A version's exported scoring graph (raw windows in; score, per-channel errors and the
    reconstruction out) in an ONNX Runtime session of ``threads`` intra-op threads."""

    def __init__(self, graph: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        self.graph, self.threads = graph, threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.window, self.channels = (int(d) for d in self.session.get_inputs()[0].shape[1:])

    @property
    def digest(self) -> str:
        return onnx_digest(self.graph)

    def run(self, windows: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        x = np.asarray(windows, np.float32)
        if len(x) == 0:
            shapes = {"score": (0,), "errors": (0, self.channels)}
            return [np.zeros(shapes.get(o, (0, *x.shape[1:])), np.float32) for o in outputs]
        parts = [
            self.session.run(outputs, {self.input: x[lo : lo + CHUNK]})
            for lo in range(0, len(x), CHUNK)
        ]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]


@dataclass
class Detector:
    """Scores windows in one batched pass; hands out per-asset thresholds.

    ``model`` is a Keras model or an ``OnnxScorer``; the Keras one may carry its exported graph
    in ``onnx`` (bytes), which the service's local copy keeps."""

    model: Any
    spec: DetectorSpec
    version: str = "local"
    onnx: bytes | None = field(default=None, repr=False)
    _forward: Any = field(default=None, repr=False)

    @property
    def runtime(self) -> str:
        return "onnx" if isinstance(self.model, OnnxScorer) else "keras"

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, per-channel errors) for raw windows (n, W, C): one forward pass."""
        if isinstance(self.model, OnnxScorer):
            score, errors = self.model.run(windows, ["score", "errors"])
            return score, errors
        return self._compiled()(windows)

    def change(self, windows: np.ndarray) -> np.ndarray | None:
        """Each raw window's change (``sensorwatch.models.change``): above the recipe's
        ``change_factor``, an alarm may open. None for a version trained before changes were fitted."""
        if self.spec.change_scale is None or self.spec.change_level is None:
            return None
        z = self._scaled(windows)
        return window_change(z, np.asarray(self.spec.change_scale), self.spec.change_level)

    def reconstruct(self, windows: np.ndarray) -> np.ndarray:
        """The model's reconstruction of raw windows (n, W, C), in the readings' own units: what a
        reviewer compares each channel with. For a few windows, not a stream."""
        mean, std, _ = self.spec.arrays()
        if isinstance(self.model, OnnxScorer):
            (recon,) = self.model.run(windows, ["reconstruction"])
        else:
            from sensorwatch.models.backend import keras

            recon = keras.ops.convert_to_numpy(self.model(self._scaled(windows), training=False))
        return recon * std + mean

    def warm_up(self) -> Detector:
        """Compile the forward pass for every batch shape (Keras), or run the session once
        (ONNX), before the first poll."""
        if isinstance(self.model, OnnxScorer):
            self.score(np.zeros((1, self.spec.window, len(self.spec.channels)), np.float32))
        else:
            self._compiled().warm_up()
        return self

    def _scaled(self, windows: np.ndarray) -> np.ndarray:
        mean, std, _ = self.spec.arrays()
        return np.clip((np.asarray(windows, np.float32) - mean) / std, -Z_LIMIT, Z_LIMIT)

    def _compiled(self) -> Any:
        if self._forward is None:
            from sensorwatch.models.compiled import compile_forward

            self._forward = compile_forward(self.model, *self.spec.arrays(), reduce=self.spec.score)
        return self._forward

    def new_threshold(self) -> Threshold:
        """A fresh copy of the fitted threshold, with its own stream state (one per asset)."""
        return threshold_from_dict(self.spec.threshold)
