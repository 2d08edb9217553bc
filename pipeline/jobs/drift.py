"""Drift: whether the recent window scores left the champion's own validation scores, by a test of
significance with a stated false-alarm rate per check (``drift_alpha``).

Neighbouring windows share all but one reading and an operating point lasts minutes, so single
windows are not independent draws. Scores are compared in blocks instead: at training, each
stretch's validation scores are cut into blocks of ``BLOCK_TAUS`` times their integrated
autocorrelation time (at least one window long, so blocks share no reading), and each block's
median is kept with the version (``drift_reference.json``). A check cuts each asset's recent
scores into blocks of the same time span (whatever stride the service scores at) and counts the
blocks whose median is above the ``k``-th largest reference median (about the reference's upper
quartile). Were the recent blocks drawn as the reference ones were, each would lie above it with
a probability that is Beta(k, n + 1 - k) distributed, so the count is beta-binomial: the p-value
is its upper tail, and below ``drift_alpha`` the check says drift. A fault of a few minutes
moves a block or two, not the count; a shift of the whole process moves nearly every block.

>>> ref = reference([np.full(400, 1.0) + np.arange(400) % 7 / 10], window=30, interval_ms=1000)
>>> ref["block_windows"], len(ref["block_medians"])
(30, 13)
>>> round(tail(10, 10, 2, 13), 6), round(tail(3, 10, 2, 13), 2)
(1e-05, 0.2)
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sensorwatch.pipeline.archive import read_archive
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stores import store_of

REFERENCE = "drift_reference.json"  # beside the model in the version's training run
BLOCK_TAUS = 2  # a block spans this many autocorrelation times of the scores: nearly independent


@dataclass(frozen=True)
class Drift:
    """What a drift check found: ``drifted`` is None when it could not tell (``why`` says why)."""

    drifted: bool | None
    why: str
    windows: int = 0  # recent windows scored by the champion
    blocks: int = 0  # recent blocks compared
    above: int = 0  # of which above the reference level
    p_value: float = 1.0

    @property
    def exit_code(self) -> int:
        """0 no drift, 1 drift, 2 could not tell."""
        return 2 if self.drifted is None else int(self.drifted)


def reference(validation_scores: list[np.ndarray], window: int, interval_ms: int) -> dict | None:
    """The block medians a drift check compares with, from each training stretch's validation
    window scores (one every ``interval_ms``, in time order); None when there are too few to cut
    one block."""
    parts = [np.asarray(s, np.float64) for s in validation_scores if len(s) >= window]
    if not parts:
        return None
    tau = float(np.median([_autocorrelation_time(s) for s in parts]))
    length = min(max(window, math.ceil(BLOCK_TAUS * tau)), max(len(s) for s in parts))
    medians = [float(np.median(b)) for s in parts for b in _blocks(s, length)]
    return {
        "block_windows": int(length),
        "block_ms": int(length * interval_ms),
        "autocorrelation_windows": round(tau, 2),
        "validation_windows": int(sum(len(s) for s in parts)),
        "block_medians": [float(f"{m:.6g}") for m in medians],
    }


def _autocorrelation_time(scores: np.ndarray) -> float:
    """1 + 2 Σ ρ(lag) of the log scores, summed while ρ stays above 0.05."""
    x = np.log(np.maximum(scores, 1e-12))
    x = x - x.mean()
    var = float((x * x).mean())
    if var <= 0:
        return 1.0
    tau = 1.0
    for lag in range(1, len(x) // 2):
        rho = float((x[:-lag] * x[lag:]).mean()) / var
        if rho <= 0.05:
            break
        tau += 2 * rho
    return tau


def _blocks(scores: np.ndarray, length: int) -> list[np.ndarray]:
    return [scores[i : i + length] for i in range(0, len(scores) - length + 1, length)]


def tail(above: int, blocks: int, k: int, n: int) -> float:
    """P(at least ``above`` of ``blocks`` exceed the ``k``-th largest of ``n`` reference blocks)
    when all are drawn alike: the beta-binomial(blocks, k, n + 1 - k) upper tail."""
    a, b = k, n + 1 - k
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    total = 0.0
    for j in range(above, blocks + 1):
        log_choose = math.lgamma(blocks + 1) - math.lgamma(j + 1) - math.lgamma(blocks - j + 1)
        log_num = math.lgamma(j + a) + math.lgamma(blocks - j + b) - math.lgamma(blocks + a + b)
        total += math.exp(log_choose + log_num - log_beta)
    return min(1.0, total)


def rank(n: int) -> int:
    """Which reference block median is the level: about the upper quartile, the second largest at
    least (one block alone is no level to trust), never more than there are."""
    return min(n, max(2, (n + 1) // 4))


def drift(settings: Settings, now_ms: int | None = None) -> Drift:
    """The test over the last ``drift_window_hours`` of archived scores of the champion version.

    Raises ``UserError`` for an archive that is not there, and MLflow's own error when the tracking
    server is out of reach (the command line says so in one line)."""
    from sensorwatch.models.registry import alias_version

    store = store_of(settings)
    version = alias_version(store, settings.model_alias)
    if version is None:
        return Drift(None, f"no version of {settings.model_name!r} is @{settings.model_alias}")
    ref = _reference(settings, version)
    if ref is None:
        return Drift(None, f"version {version} has no drift reference: retrain it to get one")
    _check_archive(settings.archive_uri)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    start_ms = now_ms - int(settings.drift_window_hours * 3_600_000)
    recent = _recent_scores(read_archive(settings.archive_uri, start_ms, now_ms), version)
    windows = sum(len(s) for _, s in recent)
    span = ref["block_ms"]
    medians = [float(np.median(b)) for ts, s in recent for b in _time_blocks(ts, s, span)]
    refs = sorted(ref["block_medians"], reverse=True)
    n, k, blocks = len(refs), rank(len(refs)), len(medians)
    if windows < settings.drift_min_windows or blocks == 0:
        return Drift(
            None,
            f"{windows} windows scored by version {version} in the last "
            f"{settings.drift_window_hours:g} h: too few to tell",
            windows,
        )
    if tail(blocks, blocks, k, n) >= settings.drift_alpha:
        return Drift(
            None,
            f"{blocks} blocks of {span / 60_000:.3g} min against {n} of validation: too few to tell "
            f"at a false-alarm rate of {settings.drift_alpha:g}",
            windows,
            blocks,
        )
    level = refs[k - 1]
    above = sum(m > level for m in medians)
    p = tail(above, blocks, k, n)
    drifted = p < settings.drift_alpha
    why = (
        f"{above} of {blocks} blocks of {span / 60_000:.3g} min above validation's level {level:.4g} "
        f"(block median {k} of {n}), where {blocks * k / (n + 1):.1f} are expected: "
        f"p = {p:.2g} {'<' if drifted else '≥'} {settings.drift_alpha:g} "
        f"({windows} windows of version {version} in the last {settings.drift_window_hours:g} h)"
    )
    return Drift(drifted, why, windows, blocks, above, p)


def _reference(settings: Settings, version: str) -> dict | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    run_id = client.get_model_version(settings.model_name, version).run_id
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, REFERENCE, folder)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # a version trained before drift.py
                return None
            raise
        return json.loads(Path(path).read_text())


def _check_archive(uri: str) -> None:
    """A misspelt archive is an error, not an empty archive (reading would make the folder)."""
    if "://" not in uri:
        if not Path(uri).is_dir():
            raise UserError(f"no archive at {Path(uri).absolute()}: fix SENSORWATCH_ARCHIVE_URI")
        return
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(root.rstrip("/")).type == pafs.FileType.NotFound:
        raise UserError(f"no archive at {uri}: fix SENSORWATCH_ARCHIVE_URI")


def _recent_scores(
    frames: dict[str, pd.DataFrame], version: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each asset's window end times and scores by ``version``, in archived (time) order."""
    out = []
    for frame in frames.values():
        if "score" not in frame or "model_version" not in frame:
            continue
        mine = frame.loc[(frame["model_version"] == version) & frame["score"].notna()]
        if len(mine):
            out.append((mine["ts_ms"].to_numpy(np.int64), mine["score"].to_numpy(np.float64)))
    return out


def _time_blocks(ts: np.ndarray, scores: np.ndarray, span_ms: int) -> list[np.ndarray]:
    """Scores in consecutive spans of ``span_ms`` from the first; the last span only when whole,
    and none cut short by a gap to under half the windows of a typical one."""
    index = (ts - ts[0]) // span_ms
    whole = index < (ts[-1] - ts[0] + 1) // span_ms
    groups = [scores[whole & (index == i)] for i in np.unique(index[whole])]
    if not groups:
        return []
    typical = float(np.median([len(g) for g in groups]))
    return [g for g in groups if len(g) >= typical / 2]
