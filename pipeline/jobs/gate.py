"""The champion/challenger gate: both versions on the held-out day with synthetic faults injected
into it (recall without labels), against labelled events and the anomalies people reviewed
(scored by ``sensorwatch.pipeline.review.spans``), and the rule that says whether the
challenger is better.

Faults of the simulator's kinds (``sensorwatch.models.faults``), each sized in its channel's own
spread on that asset, are written into a copy of the held-out day's real readings (a seeded,
repeatable draw); both versions score the same copy on the service's path, and their alarms are
counted against the faults and the labelled events (``sensorwatch.pipeline.jobs.figures``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from sensorwatch.pipeline.jobs.figures import Figures, labels_of, plain, score
from sensorwatch.pipeline.jobs.injection import Injection, injected_copy, injected_faults_png
from sensorwatch.pipeline.jobs.retrain import _champion
from sensorwatch.pipeline.jobs.span import Span, archived_frames
from sensorwatch.pipeline.review.spans import reviewed_spans, score_reviewed
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of

log = logging.getLogger("sensorwatch.pipeline")


def evaluate(settings: Settings, logical_date: str, version: str) -> dict[str, Any]:
    """Champion and challenger on the held-out day with injected faults (and the labelled events
    and reviewed anomalies): the figures, logged to the challenger's run as ``gate.*`` metrics,
    ``gate.json`` and a plot of the injected faults, and the gate's verdict."""
    from mlflow import MlflowClient

    from sensorwatch.models.mlflow_store import mlflow_for
    from sensorwatch.models.registry import load_version

    span = Span.of(logical_date, settings.retrain_lookback_days)
    holdout = archived_frames(settings, span.holdout_ms, span.end_ms)
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
                "figures": {who: plain(each) for who, each in figures.items()},
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
        "challenger": plain(challenger),
        "champion": plain(champion) if champion else None,
    }


def _log_bytes(mlflow: Any, data: bytes, name: str) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        mlflow.log_artifact(str(path))


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
