"""A compiled forward function for the active Keras backend: the one module that names backends.

The model itself is plain Keras 3; only the compiler that wraps its forward pass differs:
XLA through ``tf.function(jit_compile=True)``, ``jax.jit``, or eager PyTorch under ``no_grad``.
Batches are padded to a few fixed sizes so the compiler traces a handful of shapes, not one per poll.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import numpy as np

from sensorwatch.models.backend import keras
from sensorwatch.models.spec import Z_LIMIT

Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

BUCKETS = (
    8,
    32,
    128,
    512,
)  # a large batch runs as chunks of the largest: little padding, few shapes


def _bucket(n: int) -> int:
    for size in BUCKETS:
        if n <= size:
            return size
    return BUCKETS[-1]


# Score modes: channel errors averaged or maxed; "+level" adds the window's level to each channel's error.
REDUCES = ("mean", "max", "mean+level", "max+level")


def _errors(model: keras.Model, mean, std, scale, x, reduce: str = "mean"):
    """Scaled error per window and channel, and the window score (their mean or max)."""
    score, err, _ = _scored(model, mean, std, scale, x, reduce)
    return score, err


def _scored(model, mean, std, scale, x, reduce: str = "mean"):
    """The window score, the scaled error per channel and the reconstruction (scaled units)."""
    z = (keras.ops.convert_to_tensor(x) - mean) / std  # numpy in, on eager backends (PyTorch)
    # A reading ten thousand standard deviations out is as anomalous as one can be; clipping it
    # there keeps every error finite in float32 (a value of 1e25 would square to infinity).
    z = keras.ops.clip(z, -Z_LIMIT, Z_LIMIT)
    recon = model(z, training=False)
    err = keras.ops.mean(keras.ops.square(recon - z), axis=1)
    if reduce.endswith("+level"):
        # An autoencoder learns to reconstruct a level shift, so a window that sits steadily away
        # from the training data can score low. The squared distance of the window's mean from
        # the training mean catches it; times the window length, each term is in units of its own
        # variance for independent readings (1 for a reading, 1/W for a mean of W).
        window = keras.ops.shape(z)[1]
        err = err + window * keras.ops.square(keras.ops.mean(z, axis=1))
    err = err / scale
    # "max": one channel far off is enough, however quiet the others are.
    score = keras.ops.max(err, axis=1) if reduce.startswith("max") else keras.ops.mean(err, axis=1)
    return score, err, recon


def _backend_compile(fn, window: int, channels: int):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # Traced once for any batch size; XLA compiles each bucket's shape from that one graph.
        vector = tf.TensorSpec([channels], tf.float32)
        signature = [tf.TensorSpec([None, window, channels], tf.float32), vector, vector, vector]
        return tf.function(fn, jit_compile=True, input_signature=signature)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "torch":
        import torch

        def no_grad(*args):
            with torch.no_grad():
                return fn(*args)

        return no_grad
    return fn


_COMPILED: weakref.WeakKeyDictionary[keras.Model, dict[str, Callable]] = weakref.WeakKeyDictionary()


def compile_forward(
    model: keras.Model, mean: np.ndarray, std: np.ndarray, scale: np.ndarray, reduce: str = "mean"
) -> Forward:
    """``forward(windows) -> (scores, channel_errors)`` for raw windows (batch, W, C)."""
    consts = [keras.ops.convert_to_tensor(np.asarray(a, np.float32)) for a in (mean, std, scale)]
    if reduce not in REDUCES:
        raise ValueError(f"score reduce must be one of {', '.join(REDUCES)}, not {reduce!r}")
    per_model = _COMPILED.setdefault(model, {})
    if reduce not in per_model:
        # Scaler and error scale are arguments, not constants, so a model scored with another
        # calibration (or retrained in place) reuses the compiled function instead of compiling again.
        # A weak reference: the cache must not keep a replaced model alive.
        ref = weakref.ref(model)
        per_model[reduce] = _backend_compile(
            lambda x, m, s, e: _errors(ref(), m, s, e, x, reduce),
            int(model.input_shape[1]),
            len(mean),
        )
    fn = per_model[reduce]

    def compiled(x):
        return fn(x, *consts)

    channels = len(mean)

    def forward(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(windows)
        if n == 0:
            return np.zeros(0, np.float32), np.zeros((0, channels), np.float32)
        scores, errs = [], []
        for start in range(0, n, BUCKETS[-1]):
            chunk = np.asarray(windows[start : start + BUCKETS[-1]], np.float32)
            size = _bucket(len(chunk))
            padded = np.zeros((size, *chunk.shape[1:]), np.float32)
            padded[: len(chunk)] = chunk
            s, e = compiled(padded)
            scores.append(keras.ops.convert_to_numpy(s)[: len(chunk)])
            errs.append(keras.ops.convert_to_numpy(e)[: len(chunk)])
        return np.concatenate(scores), np.concatenate(errs)

    def warm_up() -> None:
        """Compile every batch shape now, so the first polls do not pay for it."""
        for size in BUCKETS:
            compiled(np.zeros((size, *shape), np.float32))

    shape = (int(model.input_shape[1]), channels)
    forward.warm_up = warm_up  # type: ignore[attr-defined]
    return forward


# The outputs of the exported scoring graph, in this order.
ONNX_OUTPUTS = ("score", "errors", "reconstruction")
ONNX_OPSET = 17


def _plain_forward(model: keras.Model) -> Callable:
    """The model's forward pass with a final ``TimeDistributed`` layer applied to the whole
    sequence at once: the same numbers, but one matrix product in the exported graph instead of
    one per time step."""
    last = model.layers[-1]
    inner = getattr(last, "layer", None)
    if not isinstance(last, keras.layers.TimeDistributed) or not isinstance(
        inner, keras.layers.Dense
    ):
        return lambda z: model(z, training=False)
    body = keras.Model(model.inputs, last.input)
    return lambda z: inner(body(z, training=False))


def export_onnx(
    model: keras.Model, mean: np.ndarray, std: np.ndarray, scale: np.ndarray, reduce: str = "mean"
) -> bytes:
    """The whole scoring graph as ONNX: raw windows (n, W, C) named ``windows`` in; the window
    score (n,), the scaled error per channel (n, C) and the reconstruction in scaled units
    (n, W, C) out. Scaler and error scale are constants of the graph. TensorFlow backend only
    (the graph is traced with ``tf.function`` and converted by tf2onnx, in memory)."""
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            f"ONNX export needs the TensorFlow backend of Keras, not {keras.backend.backend()}"
        )
    if reduce not in REDUCES:
        raise ValueError(f"score reduce must be one of {', '.join(REDUCES)}, not {reduce!r}")
    import logging

    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    with warnings.catch_warnings():  # its own note on numpy 2
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()  # tf2onnx and numpy 2
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    forward = _plain_forward(model)
    arrays = [np.asarray(a, np.float32) for a in (mean, std, scale)]
    window, channels = int(model.input_shape[1]), len(mean)
    signature = [tf.TensorSpec([None, window, channels], tf.float32, name="windows")]

    def graph(windows):
        consts = [tf.constant(a) for a in arrays]  # made inside: constants, not captured inputs
        score, err, recon = _scored(lambda z, training: forward(z), *consts, windows, reduce)
        return dict(zip(ONNX_OUTPUTS, (score, err, recon)))

    fn = tf.function(graph, input_signature=signature, autograph=False)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=ONNX_OPSET)
    return proto.SerializeToString()
