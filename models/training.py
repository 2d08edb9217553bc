"""Training a detector: normal data → stretches between gaps → windows → LSTM autoencoder → error scale → threshold."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

from sensorwatch.models.autoencoder import build_autoencoder
from sensorwatch.models.backend import keras
from sensorwatch.models.cadence import (
    TimeSeries,
    TrainingDataError,
    training_stretches,
)
from sensorwatch.models.calibration import (
    autocorrelation,
    channel_slowness,
    fit_error_scale,
    fit_on_enough,
    fit_threshold,
    fit_windows,
)
from sensorwatch.models.change import fit_change
from sensorwatch.models.compiled import compile_forward
from sensorwatch.models.process import choose as choose_process
from sensorwatch.models.recipe import Recipe, TrainOptions
from sensorwatch.models.spec import DetectorSpec, fit_scaler

log = logging.getLogger("sensorwatch.models")


@dataclass
class TrainedDetector:
    """A trained model with its spec (recipe and cadence included) and its per-epoch losses."""

    model: keras.Model
    spec: DetectorSpec
    history: dict[str, list[float]]
    options: TrainOptions
    # The window scores the threshold was fitted on, in time order: another threshold method can
    # be fitted on exactly the same evidence without training again.
    calibration_scores: np.ndarray | None = None
    windows: int = 0  # training windows
    # Up to 256 validation windows in the readings' own units: registration checks the exported
    # scoring graph on them.
    validation: np.ndarray | None = None
    # Each training stretch's validation window scores, in time order (none without validation):
    # what a drift check compares recent scores with (``sensorwatch.pipeline.jobs.drift``).
    validation_scores: list[np.ndarray] | None = None

    @property
    def recipe(self) -> Recipe:
        return self.spec.recipe


def make_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """All windows of ``window`` rows every ``stride`` rows, as a (n, window, channels) view.

    >>> make_windows(np.arange(8.0).reshape(4, 2), 3).shape
    (2, 3, 2)
    """
    if len(values) < window:
        return np.zeros((0, window, values.shape[1]), values.dtype)
    return sliding_window_view(values, window, axis=0)[::stride].transpose(0, 2, 1)


def _split(series: Sequence[np.ndarray], recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation windows; validation is the end of each series (no look-ahead leak)."""
    train, val = [], []
    for values in series:
        cut = _cut(len(values), recipe)
        if cut is not None:
            train.append(make_windows(values[:cut], recipe.window, recipe.train_stride))
            val.append(make_windows(values[cut:], recipe.window, 1))
        else:
            train.append(make_windows(values, recipe.window, recipe.train_stride))
    x_train = np.concatenate(train).astype(np.float32)
    x_val = np.concatenate(val).astype(np.float32) if val else x_train
    return x_train, x_val


def _cut(n: int, recipe: Recipe) -> int | None:
    """Where a stretch of ``n`` readings is cut into training and validation (None: not cut)."""
    cut = int(n * (1 - recipe.validation))
    return (
        cut if recipe.validation > 0 and n - cut >= recipe.window and cut >= recipe.window else None
    )


def fit_detector(
    series: Sequence[TimeSeries],
    channels: Sequence[str],
    recipe: Recipe | None = None,
    options: TrainOptions | None = None,
) -> TrainedDetector:
    """Train on normal data given as one or more time series (e.g. one per asset or file).

    The series' cadence is learned and each is cut at the recipe's gaps first, so the model never
    sees a window that the stream would not form.
    """
    recipe, options = recipe or Recipe(), options or TrainOptions()
    stretches, interval = training_stretches(series, recipe)
    stretches = [np.asarray(s, np.float32) for s in stretches]
    mean, std = fit_scaler(np.concatenate(stretches))
    scaled = [(s - mean) / std for s in stretches]
    recipe, share = choose_process(recipe, scaled)
    if share is not None:
        log.info("process %s: level share %.2f", recipe.process, share)
        scaled = [s for s in scaled if len(s) >= recipe.window]
        if not scaled:
            raise TrainingDataError(
                f"too little data: no stretch of {recipe.window} readings for one window of "
                f"the {recipe.process} recipe"
            )
    x_train, x_val = _split(scaled, recipe)
    recipe = fit_on_enough(recipe, len(x_val) if x_val is not x_train else 0)
    keras.utils.set_random_seed(options.seed)
    if options.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        steps = recipe.epochs * -(-len(x_train) // recipe.batch_size)
        model = _model(recipe, options, len(channels), _jit(options, steps))
        history = _train(model, x_train, x_val, recipe, options)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    log.info(
        "trained epochs=%d loss=%.5f windows=%d interval_ms=%d",
        len(history["loss"]),
        history["loss"][-1],
        len(x_train),
        interval,
    )
    autocorr = autocorrelation(scaled)
    error_scale = fit_error_scale(model, mean, x_train, recipe, autocorr)
    threshold, scores = fit_threshold(model, mean, error_scale, x_train, x_val, recipe, interval)
    change_scale, change_level = fit_change(
        fit_windows(x_train, x_val, "all"), channel_slowness(recipe, autocorr)
    )
    spec = DetectorSpec(
        channels=list(channels),
        mean=mean.tolist(),
        std=std.tolist(),
        error_scale=error_scale.astype(float).tolist(),
        threshold=threshold,
        recipe=recipe,
        interval_ms=interval,
        change_scale=change_scale.astype(float).tolist(),
        change_level=change_level,
        level_share=share,
    )
    sample = x_val[:: max(1, len(x_val) // 256)][:256] * std + mean
    trained = TrainedDetector(model, spec, history, options, scores, len(x_train), sample)
    trained.validation_scores = _validation_scores(
        model, error_scale, x_val if x_val is not x_train else None, scores, scaled, recipe
    )
    return trained


# Training steps past which compiling the step with XLA saves more than the compiling costs (CPU).
JIT_PAYS_OFF_STEPS = 1000


def _train(
    model: keras.Model,
    x_train: np.ndarray,
    x_val: np.ndarray,
    recipe: Recipe,
    options: TrainOptions,
) -> dict[str, list[float]]:
    """Mini-batch epochs in a seeded shuffled order, stopped early when the validation loss (or,
    without validation windows, the training loss) has not improved for ``patience`` epochs; the best
    epoch's weights are kept. Returns the per-epoch losses (``loss``, ``val_loss``).

    Batches go to the compiled step as arrays (``train_on_batch``): ``fit`` would build an input
    pipeline every epoch, which costs more than the epoch itself on a few hundred windows. Every
    batch is full (the few windows left over miss that epoch, other ones each time), so the step is
    compiled for one shape, not again for each data set's remainder.
    """
    rng = np.random.default_rng(options.seed)
    validate = x_val is not x_train
    history: dict[str, list[float]] = {"loss": [], **({"val_loss": []} if validate else {})}
    best, best_weights, waited = np.inf, None, 0
    size = min(recipe.batch_size, len(x_train))
    with tqdm(
        total=recipe.epochs,
        desc="training",
        unit="epoch",
        disable=not options.progress,
        leave=False,
    ) as bar:
        for _ in range(recipe.epochs):
            order = rng.permutation(len(x_train))
            total = 0.0
            batches = len(order) // size
            for lo in range(0, batches * size, size):
                batch = x_train[order[lo : lo + size]]
                total += float(model.train_on_batch(batch, batch))
            history["loss"].append(total / batches)
            if validate:
                history["val_loss"].append(_mean_loss(model, x_val))
            current = history["val_loss" if validate else "loss"][-1]
            bar.set_postfix({k: f"{v[-1]:.4f}" for k, v in history.items()})
            bar.update()
            if current < best:
                best, best_weights, waited = current, model.get_weights(), 0
            else:
                waited += 1
                if waited >= recipe.patience:
                    break
    if best_weights is not None:
        model.set_weights(best_weights)
    return history


def _mean_loss(model: keras.Model, x: np.ndarray) -> float:
    """The mean squared reconstruction error over windows ``x`` (the training loss), through the
    compiled forward pass the model is scored with: its padded batch shapes serve any count."""
    unit = np.ones(x.shape[2], np.float32)
    scores, _ = compile_forward(model, unit * 0, unit, unit, "mean")(x)
    return float(scores.mean())


def _jit(options: TrainOptions, steps: int) -> bool | str:
    """Whether the training step is compiled with XLA (see ``TrainOptions.jit_compile``).

    >>> long, kept, off = TrainOptions(), TrainOptions(reuse_model=True), TrainOptions(jit_compile=False)
    >>> _jit(long, 50_000), _jit(kept, 10), _jit(off, 50_000)
    (True, True, False)
    """
    if options.jit_compile is not None:
        return options.jit_compile
    if keras.backend.backend() != "tensorflow":
        return "auto"  # JAX compiles anyway; PyTorch's compiler is not worth it here
    return options.reuse_model or steps >= JIT_PAYS_OFF_STEPS


_KEPT: dict[tuple[Any, ...], tuple[keras.Model, list[np.ndarray]]] = {}


def _model(
    recipe: Recipe, options: TrainOptions, channels: int, jit: bool | str = "auto"
) -> keras.Model:
    """A compiled autoencoder at its seeded initial weights, built anew or reset (``reuse_model``)."""
    key = (
        recipe.window,
        channels,
        recipe.units,
        recipe.latent,
        recipe.learning_rate,
        options.seed,
        options.mixed_precision,
        jit,
    )
    if options.reuse_model and key in _KEPT:
        model, initial = _KEPT[key]
        model.set_weights(initial)
        for var in model.optimizer.variables:
            if "learning_rate" not in var.path:  # moments and step count back to zero
                var.assign(np.zeros(var.shape, var.dtype))
        return model
    model = build_autoencoder(recipe.window, channels, recipe.units, recipe.latent)
    model.compile(
        optimizer=keras.optimizers.Adam(recipe.learning_rate),
        loss="mse",
        jit_compile=jit,
    )
    if options.reuse_model:
        _KEPT[key] = (model, model.get_weights())
    return model


def _validation_scores(
    model, error_scale, x_val, fitted, scaled, recipe: Recipe
) -> list[np.ndarray] | None:
    """The validation window scores of each stretch (those the threshold was fitted on, when it
    was fitted on validation), or None without validation windows."""
    if x_val is None:
        return None
    if recipe.threshold_on == "validation":
        scores = fitted
    else:
        unit = np.ones_like(error_scale)
        scores, _ = compile_forward(model, unit * 0, unit, error_scale, recipe.score)(x_val)
    cuts = [_cut(len(s), recipe) for s in scaled]
    sizes = [len(s) - c - recipe.window + 1 for s, c in zip(scaled, cuts) if c is not None]
    return np.split(np.asarray(scores, np.float64), np.cumsum(sizes)[:-1])
