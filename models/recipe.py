"""The detector recipe: everything that decides how a model is trained and how its scores are judged.

One recipe travels from training to serving: ``sensorwatch train`` fits a model with it, stores it
with the model version in MLflow, and ``serve``, ``detect`` and ``evaluate`` decide exactly as that
version was evaluated. Every field is also a setting (``SENSORWATCH_<FIELD>``, see
``sensorwatch.pipeline.settings``) and a command-line option of those four commands.

The fields fall in two groups. *Model* fields (window, network, training, score, error scale,
threshold) are baked into a trained version: changing them means training again. *Decision* fields
(``DECISION_FIELDS``: scoring stride, threshold scale, alarm rules, cadence rules) only steer what happens after the
forward pass, so a running service may override them knowingly.

Time rules follow the data's own cadence: each training set's typical interval between readings
is learned (``sensorwatch.models.cadence``) and stored with the version, and the gap and grace
rules are multiples of it, unless an absolute override in seconds is set.

``TrainOptions`` sit beside the recipe: how one training run goes (seed, mixed precision, a
progress bar), which does not change what the detector means.

>>> r = Recipe()
>>> r.window, r.score, r.alarm_rules().min_windows
(20, 'max+level', 10)
>>> r.cadence(1000).max_gap_ms, Recipe(max_gap_s=5.0).cadence(1000).max_gap_ms
(10000, 5000)
>>> Recipe.split({"min_windows": 3, "window": 30})
({'min_windows': 3}, {'window': 30})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sensorwatch.models.alarms import AlarmRules

Score = Literal["mean", "max", "mean+level", "max+level"]
ThresholdMethod = Literal["reference", "zscore", "spot", "dynamic", "likelihood"]


@dataclass(frozen=True)
class Cadence:
    """Time rules of one model version, in milliseconds: the learned interval, the gap that resets
    an asset's window, and how far out of order a reading may arrive and still be re-ordered."""

    interval_ms: int
    max_gap_ms: int
    grace_ms: int


class Recipe(BaseModel):
    """How a detector is trained and decides (the defaults are the best benchmarked recipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Model and training
    window: int = Field(20, ge=2, description="Window length W in readings.")
    units: int = Field(32, ge=1, description="LSTM units of the encoder and the decoder.")
    latent: int = Field(
        4, ge=1, description="Width of the latent vector between encoder and decoder."
    )
    epochs: int = Field(30, ge=1, description="Most training epochs (early stopping ends sooner).")
    patience: int = Field(
        5, ge=1, description="Epochs without a better validation loss before training stops."
    )
    batch_size: int = Field(32, ge=1, description="Training batch size.")
    learning_rate: float = Field(3e-3, gt=0, description="Adam learning rate.")
    validation: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share at the end of each training series held out for early stopping.",
    )
    train_stride: int = Field(
        1, ge=1, description="Stride between training windows (thins long histories)."
    )

    process: Literal["auto", "steady", "moving"] = Field(
        "auto",
        description="Steady (one operating point) or moving (operating points change in normal "
        "operation); auto: the training data decides (sensorwatch.models.process) and the version "
        "records the choice.",
    )

    # Scoring
    score: Score = Field(
        "max+level",
        description="Window score from per-channel errors: their mean or the largest; "
        "+level adds how far the window's mean sits from the training data.",
    )
    error_scale: Literal["train", "autocorr"] = Field(
        "autocorr",
        description="Per-channel error scale: the mean training error, or that times (1+r)/(1-r) for a "
        "channel with lag-1 autocorrelation r (slow channels weigh less).",
    )
    stride: int = Field(
        1, ge=1, description="Stride S: a window is scored every S readings of an asset."
    )

    # Threshold
    threshold: ThresholdMethod = Field(
        "reference",
        description="Threshold method: reference, zscore, spot, dynamic or likelihood (models/thresholds).",
    )
    threshold_params: dict[str, float] = Field(
        default_factory=lambda: {"factor": 2.0, "follow": 2000},
        description='Parameters of the threshold method, as JSON (e.g. {"quantile": 0.99, "factor": 2.0}).',
    )
    threshold_on: Literal["validation", "all"] = Field(
        "all",
        description="Training windows the threshold is fitted on: the validation part or all.",
    )
    threshold_scale: float = Field(
        1.0,
        gt=0,
        description="Multiplier on every asset's fitted threshold when deciding "
        "(sensorwatch review tune sets it from reviewed anomalies).",
    )

    # Alarm rules (in windows)
    min_windows: int = Field(
        10, ge=1, description="Anomalous windows in a row before an alarm opens."
    )
    merge_windows: int = Field(
        3, ge=0, description="Normal windows an open alarm bridges before it closes."
    )
    suppress_windows: int = Field(
        30, ge=0, description="Windows after an alarm closes before another may open."
    )
    clear_ratio: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="An alarm clears once scores fall below this fraction of its own level (0: off).",
    )
    clear_span: int = Field(
        30, ge=1, description="Windows the alarm's level averages over (exponentially weighted)."
    )
    rearm_ratio: float = Field(
        0.2,
        ge=0,
        description="After an alarm clears, new ones need scores above this fraction of its level (0: off).",
    )
    rearm_half_life: int = Field(
        300, ge=0, description="Windows in which that bar halves (0: it never falls)."
    )
    change_factor: float = Field(
        1.25,
        ge=0,
        description="An alarm opens only after a change: some channel's level steps inside a window "
        "by more than this times the training steps' 99th percentile (0: off).",
    )
    change_within: int = Field(
        200,
        ge=1,
        description="Windows after such a change during which an alarm may open.",
    )
    drift_windows: int = Field(
        300,
        ge=0,
        description="An anomaly held back for want of a change opens an alarm anyway once it has "
        "lasted this many windows, as a slowly growing fault does (0: never).",
    )

    # Cadence rules
    max_gap_intervals: float = Field(
        10.0,
        gt=1,
        description="A gap longer than this many learned intervals resets an asset's window.",
    )
    grace_intervals: float = Field(
        2.0,
        ge=0,
        description="Readings up to this many learned intervals out of order are re-ordered.",
    )
    max_gap_s: float | None = Field(
        None,
        gt=0,
        description="Absolute gap in seconds that resets a window (overrides max_gap_intervals).",
    )
    grace_s: float | None = Field(
        None,
        ge=0,
        description="Absolute grace in seconds for out-of-order readings (overrides grace_intervals).",
    )

    def alarm_rules(self) -> AlarmRules:
        """The alarm rules of this recipe (a view of its alarm fields)."""
        return AlarmRules.of(self)

    def cadence(self, interval_ms: int) -> Cadence:
        """Gap and grace in milliseconds for data sampled every ``interval_ms``."""
        interval_ms = max(1, int(interval_ms))
        gap = (
            self.max_gap_s * 1000
            if self.max_gap_s is not None
            else self.max_gap_intervals * interval_ms
        )
        grace = (
            self.grace_s * 1000 if self.grace_s is not None else self.grace_intervals * interval_ms
        )
        return Cadence(interval_ms, max(1, round(gap)), round(grace))

    def updated(self, **changes: Any) -> Recipe:
        """A validated copy with some fields changed (``ValueError`` names a bad one)."""
        try:
            return Recipe.model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(
                f"{'.'.join(map(str, err['loc'])) or 'recipe'}: {err['msg']}"
            ) from None

    @staticmethod
    def split(changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``changes`` as (decision fields, model fields): what a trained version can and cannot take."""
        decisions = {k: v for k, v in changes.items() if k in DECISION_FIELDS}
        return decisions, {k: v for k, v in changes.items() if k not in DECISION_FIELDS}


@dataclass(frozen=True)
class TrainOptions:
    """How one training run goes, beside the recipe: what does not change the detector's meaning.
    ``Settings.train_options`` makes them from the settings (seed, mixed precision)."""

    seed: int = 7
    mixed_precision: bool = False
    progress: bool = True
    # Train in a model kept from an earlier call with the same architecture (weights and optimizer
    # reset to the seeded start), which saves building and tracing the training step again: many
    # short trainings in one process (a benchmark) get much faster. The returned model is then
    # only valid until the next such call.
    reuse_model: bool = False
    # Compile the training step with XLA (TensorFlow): on a CPU it fuses the LSTMs' time loops and
    # runs small batches about twice as fast (batch 32), after about 10 s of compiling. None chooses: on when that
    # pays off (a kept model trains many times, or one run is long); Keras' own choice on other backends.
    jit_compile: bool | None = None


RECIPE_FIELDS: frozenset[str] = frozenset(Recipe.model_fields)
DECISION_FIELDS: frozenset[str] = frozenset(
    {
        "stride",
        "threshold_scale",
        "min_windows",
        "merge_windows",
        "suppress_windows",
        "clear_ratio",
        "clear_span",
        "rearm_ratio",
        "rearm_half_life",
        "change_factor",
        "change_within",
        "drift_windows",
        "max_gap_intervals",
        "grace_intervals",
        "max_gap_s",
        "grace_s",
    }
)
