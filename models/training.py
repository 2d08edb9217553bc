"""Training a detector: windows of normal data → LSTM autoencoder → error scale → threshold."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

from models.autoencoder import build_autoencoder
from models.compiled import compile_forward
from models.spec import DetectorSpec, fit_scaler
from models.thresholds import make_threshold

log = logging.getLogger("sensorwatch.models")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: window, model size, optimisation, threshold method and its parameters."""

    window: int = 30
    stride: int = 1
    units: int = 64
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 4
    validation: float = 0.2
    threshold: str = "reference"
    threshold_params: dict[str, Any] = field(default_factory=dict)
    latent: int | None = None  # latent size of the autoencoder (None: units // 2)
    # "train": each channel's error is divided by its mean training error; "autocorr": that,
    # times (1 + r) / (1 - r) with r the channel's lag-1 autocorrelation in the training data.
    # A slow channel (r near 1) has few effectively independent readings in a short training
    # span, so the span shows little of its normal range: its errors are trusted less.
    error_scale: str = "train"
    # Window score from channel errors: "mean" or "max"; "mean+level"/"max+level" add to each
    # channel's error how far the window's mean sits from the training mean (models.compiled).
    score: str = "mean"
    threshold_on: str = "validation"  # scores the threshold is fitted on: "validation" or "all" windows
    # Train in a model kept from an earlier call with the same architecture (weights and optimizer
    # reset to the seeded start), which saves building and tracing the training step again: many
    # short trainings in one process (a benchmark) get much faster. The returned model is then
    # only valid until the next such call.
    reuse_model: bool = False
    mixed_precision: bool = False
    seed: int = 7
    progress: bool = True


@dataclass
class TrainedDetector:
    """A trained model with its spec and the per-epoch losses of its training."""

    model: keras.Model
    spec: DetectorSpec
    history: dict[str, list[float]]
    config: TrainConfig
    # The window scores the threshold was fitted on, in time order: another threshold method can
    # be fitted on exactly the same evidence without training again.
    calibration_scores: np.ndarray | None = None


def make_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """All windows of ``window`` rows every ``stride`` rows, as a (n, window, channels) view.

    >>> make_windows(np.arange(8.0).reshape(4, 2), 3).shape
    (2, 3, 2)
    """
    if len(values) < window:
        return np.zeros((0, window, values.shape[1]), values.dtype)
    return sliding_window_view(values, window, axis=0)[::stride].transpose(0, 2, 1)


def _split(series: Sequence[np.ndarray], config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation windows; validation is the end of each series (no look-ahead leak)."""
    train, val = [], []
    for values in series:
        cut = int(len(values) * (1 - config.validation))
        if config.validation > 0 and len(values) - cut >= config.window:
            train.append(make_windows(values[:cut], config.window, config.stride))
            val.append(make_windows(values[cut:], config.window, 1))
        else:
            train.append(make_windows(values, config.window, config.stride))
    if not any(len(t) for t in train):
        raise ValueError(f"too little data: no series has {config.window} readings for one window")
    x_train = np.concatenate(train).astype(np.float32)
    x_val = np.concatenate(val).astype(np.float32) if val else x_train
    return x_train, x_val


class _EpochBar(keras.callbacks.Callback):
    """One tqdm bar over epochs, showing the losses."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        super().__init__()
        self.bar = tqdm(total=epochs, desc="training", unit="epoch", disable=not enabled, leave=False)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in (logs or {}).items() if "loss" in k})
        self.bar.update()

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.bar.close()


def fit_detector(series: Sequence[np.ndarray], channels: Sequence[str], config: TrainConfig) -> TrainedDetector:
    """Train on normal data given as one or more series (rows × channels, e.g. one per asset)."""
    series = [np.asarray(s, np.float32) for s in series]
    mean, std = fit_scaler(np.concatenate(series))
    scaled = [(s - mean) / std for s in series]
    x_train, x_val = _split(scaled, config)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model(config, len(channels))
        # Shuffling starts from the seed whether the model was built or reused.
        keras.utils.set_random_seed(config.seed)
        fit = model.fit(
            x_train,
            x_train,
            validation_data=(x_val, x_val) if x_val is not x_train else None,
            epochs=config.epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    monitor="val_loss" if x_val is not x_train else "loss",
                    patience=config.patience,
                    restore_best_weights=True,
                ),
                _EpochBar(config.epochs, config.progress),
            ],
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    log.info("trained epochs=%d loss=%.5f windows=%d", len(history["loss"]), history["loss"][-1], len(x_train))
    spec, scores = _calibrate(model, channels, mean, std, x_train, x_val, config, _autocorrelation(scaled))
    return TrainedDetector(model, spec, history, config, scores)


_KEPT: dict[tuple[Any, ...], tuple[keras.Model, list[np.ndarray]]] = {}


def _model(config: TrainConfig, channels: int) -> keras.Model:
    """A compiled autoencoder at its seeded initial weights, built anew or reset (``reuse_model``)."""
    key = (config.window, channels, config.units, config.latent, config.learning_rate, config.seed, config.mixed_precision)
    if config.reuse_model and key in _KEPT:
        model, initial = _KEPT[key]
        model.set_weights(initial)
        for var in model.optimizer.variables:
            if "learning_rate" not in var.path:  # moments and step count back to zero
                var.assign(np.zeros(var.shape, var.dtype))
        return model
    model = build_autoencoder(config.window, channels, config.units, config.latent)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    if config.reuse_model:
        _KEPT[key] = (model, model.get_weights())
    return model


def _autocorrelation(series: Sequence[np.ndarray]) -> np.ndarray:
    """Lag-1 autocorrelation of each channel of scaled (zero-mean) series, pooled, clipped to [0, 0.999].

    >>> t = np.arange(200.0)
    >>> _autocorrelation([np.c_[np.sin(t / 20), (-1.0) ** t]]).round(2).tolist()
    [1.0, 0.0]
    """
    num = sum((s[1:] * s[:-1]).sum(axis=0) for s in series)
    den = sum((s * s).sum(axis=0) for s in series)
    return np.clip(num / np.maximum(den, 1e-12), 0.0, 0.999)


def _calibrate(model, channels, mean, std, x_train, x_val, config, autocorr) -> tuple[DetectorSpec, np.ndarray]:
    """Per-channel error scale from training windows, threshold from validation (or all) scores."""
    zeros, ones = np.zeros_like(mean), np.ones_like(std)
    # x_* are already scaled, so the forward pass gets an identity scaler here.
    _, err_train = compile_forward(model, zeros, ones, np.ones_like(mean), config.score)(x_train)
    error_scale = np.maximum(err_train.mean(axis=0), 1e-6)
    if config.error_scale == "autocorr":
        error_scale = error_scale * (1 + autocorr) / (1 - autocorr)
    elif config.error_scale != "train":
        raise ValueError(f"error_scale must be 'train' or 'autocorr', not {config.error_scale!r}")
    fit_on = x_val if config.threshold_on == "validation" or x_val is x_train else np.concatenate([x_train, x_val])
    scores, _ = compile_forward(model, zeros, ones, error_scale, config.score)(fit_on)
    threshold = make_threshold(config.threshold, **config.threshold_params).fit(scores)
    spec = DetectorSpec(
        channels=list(channels),
        window=config.window,
        mean=mean.tolist(),
        std=std.tolist(),
        error_scale=error_scale.astype(float).tolist(),
        threshold=threshold.to_dict(),
        score=config.score,
    )
    return spec, scores
