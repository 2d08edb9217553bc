"""The champion/challenger gate: both versions on the held-out day, against labelled events and
the anomalies people reviewed (scored by ``sensorwatch.pipeline.review.feedback``), and the rule
that says whether the challenger is better."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.jobs.retrain import Span, _champion, _frames
from sensorwatch.pipeline.review.feedback import reviewed_spans, score_reviewed
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of
from sensorwatch.pipeline.stream.frames import Alarm, overlaps, replay

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector

log = logging.getLogger("sensorwatch.pipeline")


@dataclass
class Figures:
    """One version on the held-out day and the labelled events."""

    version: str
    readings: int
    windows: int
    false_alarms: int
    false_alarms_per_10k: float
    labelled: int
    found: int
    recall: float
    mean_score_ratio: float  # mean window score over the version's own threshold
    # The anomalies people reviewed (confirmed or false-positive) in the archive, each stretch
    # scored again: confirmed ones this version alarms on, and of its alarms on reviewed
    # stretches, the share at confirmed ones.
    reviewed: int = 0
    reviewed_recall: float = float("nan")
    reviewed_precision: float = float("nan")


def labels_of(settings: Settings) -> pd.DataFrame:
    """Labelled events (``asset_id``, ``start_ms``, ``end_ms``) from ``settings.labels_path``, if set."""
    if settings.labels_path is None:
        return pd.DataFrame(columns=["asset_id", "start_ms", "end_ms"])
    frame = pd.read_csv(settings.labels_path)
    missing = {"asset_id", "start_ms", "end_ms"} - set(frame.columns)
    if missing:
        raise UserError(
            f"{settings.labels_path}: labelled events need columns asset_id, start_ms, end_ms "
            f"(missing {', '.join(sorted(missing))})"
        )
    return frame


def _overlaps(alarm: Alarm, spans: pd.DataFrame) -> bool:
    asset, start, end = alarm
    near = spans[spans["asset_id"] == asset]
    return bool(((near["start_ms"] <= end) & (near["end_ms"] >= start)).any())


def score(detector: Detector, frames: dict[str, pd.DataFrame], labels: pd.DataFrame) -> Figures:
    """Run ``frames`` through the service's own path with ``detector``: alarms against labels."""
    readings, windows, ratios, opened = replay(detector, frames)
    inside = labels[(labels["asset_id"].isin(frames))]
    if frames:
        lo = min(int(f["ts_ms"].min()) for f in frames.values())
        hi = max(int(f["ts_ms"].max()) for f in frames.values())
        inside = inside[(inside["end_ms"] >= lo) & (inside["start_ms"] <= hi)]
    false = sum(1 for alarm in opened if not _overlaps(alarm, inside))
    found = sum(
        1
        for row in inside.itertuples()
        if any(overlaps(alarm, row.asset_id, row.start_ms, row.end_ms) for alarm in opened)
    )
    return Figures(
        detector.version,
        readings,
        windows,
        false,
        1e4 * false / max(readings, 1),
        len(inside),
        found,
        found / len(inside) if len(inside) else float("nan"),
        float(np.mean(ratios)) if ratios else float("nan"),
    )


def evaluate(settings: Settings, logical_date: str, version: str) -> dict[str, Any]:
    """Champion and challenger on the held-out day (and the labelled events in it): the figures,
    logged to the challenger's run as metrics and a table, and the gate's verdict."""
    from mlflow import MlflowClient

    from sensorwatch.models.registry import load_version, mlflow_for

    span = Span.of(logical_date, settings.retrain_lookback_days)
    holdout = _frames(settings, span.holdout_ms, span.end_ms)
    labels = labels_of(settings)
    store = store_of(settings)
    reviewed = reviewed_spans(settings)
    figures = {}
    for role, load in (
        ("challenger", lambda: load_version(store, version)),
        ("champion", lambda: _champion(settings)),
    ):
        try:
            detector = load()
        except LookupError:  # no champion yet
            continue
        figures[role] = score(detector, holdout, labels)
        n, recall, precision = score_reviewed(detector, settings, reviewed)
        figures[role] = replace(
            figures[role], reviewed=n, reviewed_recall=recall, reviewed_precision=precision
        )
    challenger, champion = figures["challenger"], figures.get("champion")
    better, why = gate(challenger, champion, settings)
    mlflow = mlflow_for(store, writing=True)
    run_id = MlflowClient().get_model_version(settings.model_name, version).run_id
    with mlflow.start_run(run_id=run_id):
        for who, figures in (("challenger", challenger), ("champion", champion)):
            if figures is not None:
                for key, value in asdict(figures).items():
                    if isinstance(value, (int, float)) and key != "version" and np.isfinite(value):
                        mlflow.log_metric(f"gate.{who}.{key}", float(value))
        rows = [
            dict(role=who, **asdict(f))
            for who, f in (("challenger", challenger), ("champion", champion))
            if f
        ]
        mlflow.log_table(pd.DataFrame(rows), artifact_file="gate.json")
        mlflow.set_tags(
            {"sensorwatch.gate": "better" if better else "not better", "sensorwatch.gate_why": why}
        )
    return {
        "version": version,
        "better": better,
        "why": why,
        "challenger": _plain(challenger),
        "champion": _plain(champion) if champion else None,
    }


def _plain(figures: Figures) -> dict[str, Any]:
    """The figures as JSON takes them (Airflow passes them between tasks): no NaN, None instead.

    >>> _plain(Figures("2", 10, 9, 0, 0.0, 0, 0, float("nan"), 0.5))["recall"] is None
    True
    """
    return {
        k: None if isinstance(v, float) and not np.isfinite(v) else v
        for k, v in asdict(figures).items()
    }


def gate(challenger: Figures, champion: Figures | None, settings: Settings) -> tuple[bool, str]:
    """Managed promotion's rule: at least as good on recall and fewer false alarms by the margin,
    or at least as few false alarms and a better recall by the margin."""
    if champion is None:
        return True, "no champion yet"
    fa_c, fa_k = challenger.false_alarms_per_10k, champion.false_alarms_per_10k
    rc = challenger.recall if np.isfinite(challenger.recall) else 0.0
    rk = champion.recall if np.isfinite(champion.recall) else 0.0
    figures = f"false alarms/10k {fa_c:.2f} vs {fa_k:.2f}, recall {rc:.2f} vs {rk:.2f}"
    if challenger.reviewed:
        figures += (
            f"; on {challenger.reviewed} reviewed anomalies recall {_pct(challenger.reviewed_recall)} vs "
            f"{_pct(champion.reviewed_recall)}, precision {_pct(challenger.reviewed_precision)} vs "
            f"{_pct(champion.reviewed_precision)}"
        )
    figures += f" (challenger {challenger.version} vs champion {champion.version})"
    if (
        np.isfinite(champion.reviewed_recall)
        and not challenger.reviewed_recall >= champion.reviewed_recall
    ):
        return False, f"misses confirmed anomalies the champion finds: {figures}"
    if rc >= rk and fa_c <= fa_k - settings.promote_margin_false_alarms:
        return True, f"fewer false alarms at no loss of recall: {figures}"
    if fa_c <= fa_k and rc >= rk + settings.promote_margin_recall:
        return True, f"better recall at no more false alarms: {figures}"
    return False, f"not better by the margins: {figures}"


def _pct(x: float) -> str:
    return f"{x:.0%}" if np.isfinite(x) else "n/a"
