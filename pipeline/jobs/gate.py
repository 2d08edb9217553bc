"""The champion/challenger gate: both versions on the held-out day with synthetic faults injected
into it (recall without labels), against labelled events and the anomalies people reviewed
(scored by ``sensorwatch.pipeline.review.feedback``), and the rule that says whether the
challenger is better.

Faults of the simulator's kinds (``sensorwatch.models.faults``), each sized in its channel's own
spread on that asset, are written into a copy of the held-out day's real readings (a seeded,
repeatable draw); both versions score the same copy on the service's path
(``sensorwatch.pipeline.stream.frames.replay``). An injected fault counts as found when an alarm
overlaps it; an alarm that overlaps no injected fault and no labelled event is a false alarm.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sensorwatch.models.faults import Fault
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.jobs.injection import Injection, injected_copy, injected_faults_png
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
    """One version on the held-out day with injected faults, and the labelled events."""

    version: str
    readings: int
    windows: int
    false_alarms: int  # alarms on no injected fault and no labelled event
    false_alarms_per_10k: float  # per 10,000 readings of the untouched stretches
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
    # The synthetic faults injected into the held-out day: how many, and how many it found.
    injected: int = 0
    injected_found: int = 0
    injected_recall: float = float("nan")
    hits: list[bool] = field(default_factory=list)  # per injected fault, in order
    alarms: list[Alarm] = field(default_factory=list, repr=False)


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


def score(
    detector: Detector,
    frames: dict[str, pd.DataFrame],
    labels: pd.DataFrame,
    faults: list[Fault] | None = None,
    tolerance_ms: int = 0,
) -> Figures:
    """Run ``frames`` through the service's own path with ``detector``: alarms against the
    injected ``faults`` and the labels (each extended by ``tolerance_ms``); false alarms per
    10,000 readings outside the injected faults."""
    faults = faults or []
    readings, windows, ratios, opened = replay(detector, frames)
    inside = labels[(labels["asset_id"].isin(frames))]
    if frames:
        lo = min(int(f["ts_ms"].min()) for f in frames.values())
        hi = max(int(f["ts_ms"].max()) for f in frames.values())
        inside = inside[(inside["end_ms"] >= lo) & (inside["start_ms"] <= hi)]
    # An alarm that opens while its windows still hold a fault's readings is that fault's.
    inside = inside.assign(end_ms=inside["end_ms"] + tolerance_ms)
    injected = pd.DataFrame(
        [(f.asset_id, f.start_ms, f.end_ms + tolerance_ms) for f in faults],
        columns=["asset_id", "start_ms", "end_ms"],
    )
    false = sum(
        1 for alarm in opened if not _overlaps(alarm, inside) and not _overlaps(alarm, injected)
    )
    covered = sum(
        int(((f["ts_ms"] >= row.start_ms) & (f["ts_ms"] <= row.end_ms)).sum())
        for row in injected.itertuples()
        if (f := frames.get(row.asset_id)) is not None
    )
    found = sum(
        1
        for row in inside.itertuples()
        if any(overlaps(alarm, row.asset_id, row.start_ms, row.end_ms) for alarm in opened)
    )
    hits = [
        any(overlaps(a, r.asset_id, r.start_ms, r.end_ms) for a in opened)
        for r in injected.itertuples()
    ]
    untouched = max(readings - covered, 1)
    return Figures(
        detector.version,
        readings,
        windows,
        false,
        1e4 * false / untouched,
        len(inside),
        found,
        found / len(inside) if len(inside) else float("nan"),
        float(np.mean(ratios)) if ratios else float("nan"),
        injected=len(faults),
        injected_found=sum(hits),
        injected_recall=sum(hits) / len(faults) if faults else float("nan"),
        hits=hits,
        alarms=opened,
    )


def evaluate(settings: Settings, logical_date: str, version: str) -> dict[str, Any]:
    """Champion and challenger on the held-out day with injected faults (and the labelled events
    and reviewed anomalies): the figures, logged to the challenger's run as ``gate.*`` metrics,
    ``gate.json`` and a plot of the injected faults, and the gate's verdict."""
    from mlflow import MlflowClient

    from sensorwatch.models.registry import load_version, mlflow_for

    span = Span.of(logical_date, settings.retrain_lookback_days)
    holdout = _frames(settings, span.holdout_ms, span.end_ms)
    labels = labels_of(settings)
    store = store_of(settings)
    reviewed = reviewed_spans(settings)
    versions = {"challenger": load_version(store, version)}
    try:
        versions["champion"] = _champion(settings)
    except LookupError:  # no champion yet
        pass
    specs = [d.spec for d in versions.values()]
    how = Injection.of(settings.seed, *specs)
    channels = list(dict.fromkeys(c for s in specs for c in s.channels))
    injected, faults = injected_copy(holdout, channels, how)
    figures: dict[str, Figures] = {}
    for role, detector in versions.items():
        n, recall, precision = score_reviewed(detector, settings, reviewed)
        figures[role] = replace(
            score(detector, injected, labels, faults, how.tolerance_ms),
            reviewed=n,
            reviewed_recall=recall,
            reviewed_precision=precision,
        )
    challenger, champion = figures["challenger"], figures.get("champion")
    better, why = gate(challenger, champion, settings)
    log.info("gate on %s: %s", logical_date, why)
    mlflow = mlflow_for(store, writing=True)
    run_id = MlflowClient().get_model_version(settings.model_name, version).run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("gate.injected_faults", len(faults))
        for who, each in figures.items():
            for key, value in asdict(each).items():
                if isinstance(value, (int, float)) and key != "version" and np.isfinite(value):
                    mlflow.log_metric(f"gate.{who}.{key}", float(value))
        mlflow.log_dict(
            {
                "better": better,
                "why": why,
                "logical_date": logical_date,
                "injection": asdict(how),
                "figures": {who: _plain(each) for who, each in figures.items()},
                "faults": [
                    {
                        **asdict(f),
                        **{f"found_by_{who}": each.hits[i] for who, each in figures.items()},
                    }
                    for i, f in enumerate(faults)
                ],
            },
            "gate.json",
        )
        if faults:
            png = injected_faults_png(holdout, injected, faults, figures)
            _log_bytes(mlflow, png, "gate_injected_faults.png")
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


def _log_bytes(mlflow: Any, data: bytes, name: str) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        mlflow.log_artifact(str(path))


def _plain(figures: Figures) -> dict[str, Any]:
    """The figures as JSON takes them (Airflow passes them between tasks): no NaN, None instead,
    and no alarm list.

    >>> _plain(Figures("2", 10, 9, 0, 0.0, 0, 0, float("nan"), 0.5))["recall"] is None
    True
    """
    return {
        k: None if isinstance(v, float) and not np.isfinite(v) else v
        for k, v in asdict(figures).items()
        if k != "alarms"
    }


def _recall_evidence(challenger: Figures, champion: Figures) -> list[tuple[str, int, float, float]]:
    """(what, how many, challenger's recall, champion's) for each kind of fault both were
    measured on: injected faults, labelled events, confirmed anomalies."""
    return [
        (what, n, c, k)
        for what, n, c, k in (
            (
                "injected faults",
                challenger.injected,
                challenger.injected_recall,
                champion.injected_recall,
            ),
            ("labelled faults", challenger.labelled, challenger.recall, champion.recall),
            (
                "confirmed anomalies",
                challenger.reviewed,
                challenger.reviewed_recall,
                champion.reviewed_recall,
            ),
        )
        if n and np.isfinite(c) and np.isfinite(k)
    ]


def gate(challenger: Figures, champion: Figures | None, settings: Settings) -> tuple[bool, str]:
    """Managed promotion's rule. Never a challenger that finds fewer injected, labelled or
    confirmed faults than the champion by more than the recall margin, and never one without
    evidence of recall (nothing to find, or neither found anything); then one figure better by
    its margin and the other no worse than its margin: fewer false alarms (per 10,000 untouched
    readings) at no loss of recall, or a better recall at no more false alarms."""
    if champion is None:
        return True, "no champion yet"
    c, k = challenger, champion
    fa_c, fa_k = c.false_alarms_per_10k, k.false_alarms_per_10k
    figures = f"false alarms/10k {fa_c:.2f} vs {fa_k:.2f}"
    if c.injected:
        figures = (
            f"injected faults found {c.injected_found}/{c.injected} vs {k.injected_found}/{k.injected}, "
            + figures
        )
    if c.labelled:
        figures += f", recall {c.recall:.2f} vs {k.recall:.2f} on {c.labelled} labelled"
    if c.reviewed:
        figures += (
            f"; on {c.reviewed} reviewed anomalies recall {_pct(c.reviewed_recall)} vs "
            f"{_pct(k.reviewed_recall)}, precision {_pct(c.reviewed_precision)} vs "
            f"{_pct(k.reviewed_precision)}"
        )
    figures += f" (challenger {c.version} vs champion {k.version})"
    evidence = _recall_evidence(c, k)
    if not evidence:
        return False, (
            "no evidence of recall: no fault could be injected into the held-out day and it has "
            f"no labelled or confirmed anomalies: {figures}"
        )
    if all(rc == 0 and rk == 0 for _, _, rc, rk in evidence):
        return False, f"no evidence of recall: neither version found any fault: {figures}"
    margin = settings.promote_margin_recall
    for what, _, rc, rk in evidence:
        if rc < rk - margin - 1e-9:
            return False, f"misses {what} the champion finds: {figures}"
    if fa_c <= fa_k - settings.promote_margin_false_alarms:
        return True, f"fewer false alarms at no loss of recall: {figures}"
    if fa_c <= fa_k + settings.promote_margin_false_alarms and any(
        rc >= rk + margin - 1e-9 for _, _, rc, rk in evidence
    ):
        return True, f"better recall at no more false alarms than the margin: {figures}"
    return False, f"not better by the margins: {figures}"


def _pct(x: float) -> str:
    return f"{x:.0%}" if np.isfinite(x) else "n/a"
