"""The SMD protocol: train on each machine's unlabelled first half, decide its labelled second half.

Each of the Server Machine Dataset's machines (its files: ``sensorwatch.pipeline.jobs.smd_data``)
is decided three ways under the same protocol, with nothing fitted on the test half:

- **sensorwatch**: the recipe trains on the train half and the test half is decided causally
  through the service's path (``sensorwatch.pipeline.jobs.detect``);
- **PCA**: the reconstruction error of a principal-component model keeping 95 % of the train
  half's variance (standardised channels);
- **Isolation Forest**: the anomaly score of 100 trees fitted on the train half.

The baselines' threshold is the ``BASELINE_QUANTILE`` of their scores on the train half
(``sensorwatch.pipeline.jobs.baselines``).

Figures are point-wise, **without** point adjustment, with event recall and false alarms
(``sensorwatch.pipeline.jobs.tally``). Counts are pooled over machines before any rate is taken.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sensorwatch.models.library_env import start_worker
from sensorwatch.models.recipe import Recipe, TrainOptions
from sensorwatch.pipeline.errors import SourceError
from sensorwatch.pipeline.jobs.baselines import baseline
from sensorwatch.pipeline.jobs.skab import halves
from sensorwatch.pipeline.jobs.smd_data import read_machine, smd_machines
from sensorwatch.pipeline.jobs.tally import Tally, tally

METHODS = ("sensorwatch", "pca", "iforest")


@dataclass(frozen=True)
class MachineResult:
    name: str
    method: str
    tally: Tally
    seconds: float


def evaluate_machine(
    data_dir: Path,
    name: str,
    out_dir: Path | None,
    recipe: Recipe,
    options: TrainOptions,
    retrain_every: int = 0,
) -> list[MachineResult]:
    """One machine under every method; sensorwatch's decisions written as ``datetime,score,anomaly``."""
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.data.csvfiles import SensorFrame
    from sensorwatch.pipeline.jobs.detect import decide, decide_retraining, train_on

    train, test, labels = read_machine(data_dir, name)
    results = []
    for method in ("pca", "iforest"):
        start = time.perf_counter()
        scores, threshold = baseline(method, train.values, test.values)
        t = tally(labels, scores > threshold)
        results.append(MachineResult(name, method, t, time.perf_counter() - start))
    start = time.perf_counter()
    both = SensorFrame(
        test.path,
        np.r_[train.ts_ms, test.ts_ms],
        train.channels,
        np.vstack([train.values, test.values]),
        test.labels,
    )
    # With retrains, the first version is the model every retrain keeps (``decide_retraining``).
    options = replace(options, progress=False, reuse_model=options.reuse_model or retrain_every > 0)
    trained = train_on(both, len(train), recipe, options)
    out = (
        decide_retraining(both, len(train), trained, retrain_every, options)
        if retrain_every
        else decide(both, len(train), Detector(trained.model, trained.spec))
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        out.to_csv(out_dir / f"{name}.csv", index=False)
    t = tally(labels, out["anomaly"].to_numpy()[-len(test) :])
    results.append(MachineResult(name, "sensorwatch", t, time.perf_counter() - start))
    return results


@dataclass
class SmdReport:
    results: list[MachineResult]
    wall_s: float
    workers: int

    def pooled(self, method: str, names: Sequence[str] | None = None) -> Tally:
        """``method``'s counts added over every machine, or over ``names``."""
        return sum(
            (
                r.tally
                for r in self.results
                if r.method == method and (names is None or r.name in names)
            ),
            Tally(),
        )

    def per_machine(self) -> dict[str, dict[str, Tally]]:
        table: dict[str, dict[str, Tally]] = {}
        for r in self.results:
            table.setdefault(r.name, {})[r.method] = r.tally
        return table


def evaluate_smd(
    data_dir: str | Path,
    out_dir: str | Path | None,
    recipe: Recipe | None = None,
    *,
    machines: Sequence[str] | None = None,
    workers: int = 2,
    progress: bool = True,
    compiled: Path | None = None,
    options: TrainOptions,
    retrain_every: int = 0,
) -> SmdReport:
    """Every machine (or the named ``machines``) under sensorwatch's recipe and both baselines
    (``retrain_every``: retraining as a schedule would, ``detect.decide_retraining``)."""
    data_dir = Path(data_dir)
    every = smd_machines(data_dir)
    names = list(machines) if machines is not None else every
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise SourceError(f"no SMD machine {', '.join(unknown)} under {data_dir}")
    out = Path(out_dir) if out_dir is not None else None
    started = time.perf_counter()
    results: list[MachineResult] = []
    bar = tqdm(total=len(names), desc="SMD machines", unit="machine", disable=not progress)
    worker = (Path(compiled) if compiled else None, workers > 1)
    with ProcessPoolExecutor(
        max(1, workers), mp_context=get_context("spawn"), initializer=start_worker, initargs=worker
    ) as pool:
        futures = [
            pool.submit(
                evaluate_machine, data_dir, n, out, recipe or Recipe(), options, retrain_every
            )
            for n in names
        ]
        for done in as_completed(futures):
            results.extend(done.result())
            bar.update()
    bar.close()
    results.sort(key=lambda r: (r.name, r.method))
    return SmdReport(results, time.perf_counter() - started, workers)


def format_smd(report: SmdReport) -> str:
    """Per machine and pooled (all, the tuning half and the held-out half), each method's F1, event
    recall and false alarms, as Markdown."""
    head = "| Machine | " + " | ".join(f"{m} F1 | {m} event recall | {m} FA/10k" for m in METHODS)
    lines = [head + " |", "|---" * (1 + 3 * len(METHODS)) + "|"]

    def cells(t: Tally) -> str:
        return f"{t.f1:.3f} | {t.event_recall:.2f} | {t.false_alarms_per_10k:.1f}"

    for name, by in report.per_machine().items():
        lines.append(f"| {name} | " + " | ".join(cells(by[m]) for m in METHODS if m in by) + " |")
    lines.append("| **pooled** | " + " | ".join(cells(report.pooled(m)) for m in METHODS) + " |")
    # The same split as SKAB's: every other machine in sorted order tunes, the rest is held out.
    tune, held = halves(list(report.per_machine()))
    for names, label in ((tune, "tuning half"), (held, "held-out half")):
        if names:
            row = " | ".join(cells(report.pooled(m, names)) for m in METHODS)
            lines.append(f"| pooled, {label} ({len(names)}) | {row} |")
    beats = sum(
        1
        for by in report.per_machine().values()
        if by["sensorwatch"].f1 > max(by["pca"].f1, by["iforest"].f1)
    )
    lines.append(
        f"\nsensorwatch's F1 above both baselines on {beats} of {len(report.per_machine())} "
        f"machines. Wall time: {report.wall_s:.1f} s, {report.workers} worker(s)."
    )
    return "\n".join(lines)
