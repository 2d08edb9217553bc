"""The SKAB benchmark protocol: train on each file's first rows, decide the rest, score it all.

For every file, the first ``train_rows`` (400) rows train a detector and the rest is decided
causally by ``sensorwatch.pipeline.jobs.detect``; the decisions are written as ``datetime, score, anomaly`` under
the same relative path, and compared with the file's ``anomaly`` (point metrics) and
``changepoint`` (NAB) labels. Counts and NAB tallies are pooled over files before any rate or
score is computed, as SKAB does. One recipe serves every file; ``halves`` splits the files
into a tuning half (every other file in sorted order) and a held-out half.

Files run in ``workers`` processes; each loads the deep-learning stack once and trains every one of its
files in one kept model, whose training step is compiled once (``TrainOptions.reuse_model``). With a
``compiled`` folder, the workers keep those compiled programs there, and a later run loads them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sensorwatch.models.library_env import start_worker
from sensorwatch.models.metrics import (
    NabTally,
    PointCounts,
    changepoints,
    nab_scores,
    nab_tally,
    point_counts,
)
from sensorwatch.models.recipe import Recipe, TrainOptions

TRAIN_ROWS = 400
# Other threshold methods are compared on the same trained model per file, each with the
# parameters chosen for it on the tuning half; the recipe's own method uses the recipe's.
METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "reference": Recipe().threshold_params,
    "zscore": {"k": 5.0},
    "spot": {"q": 1e-4},
    "dynamic": {"history": 800, "smooth": 5},
    "likelihood": {},
}

# Published SKAB figures (outlier detection: F1, FAR %, MAR %; changepoints: NAB standard).
LEADERBOARD: tuple[tuple[str, float, float, float], ...] = (
    ("Conv-AE", 0.78, 13.55, 28.02),
    ("MSET", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92),
)
NAB_LEADERBOARD: tuple[tuple[str, float], ...] = (
    ("MSCRED", 32.42),
    ("Isolation forest", 26.16),
    ("Conv-AE", 23.61),
    ("LSTM-AE", 23.51),
)


def skab_files(data_dir: str | Path) -> list[str]:
    """Relative paths of SKAB's labelled files (``anomaly-free`` excluded), sorted."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no SKAB data at {root} (set skab_dir / SENSORWATCH_SKAB_DIR)")
    files = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.csv") if "anomaly-free" not in p.parts
    )
    if not files:
        raise FileNotFoundError(f"no SKAB CSV files under {root}")
    for name in files:
        _check_labelled(root / name)
    return files


LABELS = ("datetime", "anomaly", "changepoint")


def _check_labelled(path: Path) -> None:
    """A SKAB file is ``;``-separated with a ``datetime`` column and the two label columns: any
    other CSV in the folder means it is not the SKAB data."""
    from sensorwatch.pipeline.errors import SourceError

    with path.open(encoding="utf-8", errors="replace") as f:
        header = [c.strip() for c in f.readline().split(";")]
    missing = [c for c in LABELS if c not in header]
    if missing:
        raise SourceError(
            f"{path}: not a SKAB file (no {', '.join(missing)} column with ';' separators): "
            "--data (or SENSORWATCH_SKAB_DIR) must be the SKAB folder with valve1/, valve2/ and other/"
        )


def halves(files: Sequence[str]) -> tuple[list[str], list[str]]:
    """(tuning, held-out): every other file in sorted order, starting with the first.

    >>> halves(["a", "b", "c"])
    (['a', 'c'], ['b'])
    """
    ordered = sorted(files)
    return ordered[::2], ordered[1::2]


@dataclass(frozen=True)
class FileResult:
    """One file under one threshold method: its pooled-ready counts and NAB tally."""

    name: str
    method: str
    counts: PointCounts
    nab: NabTally
    seconds: float


@dataclass(frozen=True)
class Summary:
    """Figures of a set of files under one method."""

    method: str
    subset: str
    files: int
    f1: float
    far: float
    mar: float
    nab: dict[str, float]


@dataclass
class SkabReport:
    """Every file's result per method, and the wall time of the whole run."""

    results: list[FileResult]
    wall_s: float
    workers: int
    methods: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every file of the data set, for the halves

    def summary(
        self, method: str, names: Sequence[str] | None = None, subset: str = "all"
    ) -> Summary:
        chosen = [
            r for r in self.results if r.method == method and (names is None or r.name in names)
        ]
        counts = sum((r.counts for r in chosen), PointCounts())
        tally = sum((r.nab for r in chosen), NabTally())
        return Summary(
            method, subset, len(chosen), counts.f1, counts.far, counts.mar, nab_scores(tally)
        )

    def summaries(self) -> list[Summary]:
        """Per method: all files, the tuning half and the held-out half."""
        ran = {r.name for r in self.results}
        tune, held = halves(self.names or sorted(ran))
        subsets = [(None, "all")] + [
            (h, label)
            for h, label in ((tune, "tuning half"), (held, "held-out half"))
            if ran & set(h)
        ]
        if len(subsets) == 2 and set(subsets[1][0]) >= ran:
            subsets = subsets[1:]  # only one half ran: "all" would say the same
        return [self.summary(m, sel, label) for m in self.methods for sel, label in subsets]


def evaluate_file(
    data_dir: Path,
    name: str,
    out_dir: Path | None,
    recipe: Recipe,
    methods: Sequence[str],
    train_rows: int,
    options: TrainOptions,
    runtime: str = "keras",
) -> list[FileResult]:
    """Train once on one file, decide it under each threshold method, write and score the decisions.
    ``runtime`` "onnx": decided through the model's exported scoring graph in ONNX Runtime, made
    and checked as registration makes it (what ``serve`` scores with by default)."""
    from sensorwatch.pipeline.data.csvfiles import read_sensor_csv
    from sensorwatch.pipeline.jobs.detect import decide, train_on, with_threshold

    start = time.perf_counter()
    frame = read_sensor_csv(data_dir / name)
    # Each worker keeps one model in memory and resets it between files.
    trained = train_on(
        frame, train_rows, recipe, replace(options, progress=False, reuse_model=True)
    )
    if runtime == "onnx":
        from sensorwatch.models.detector import OnnxScorer
        from sensorwatch.models.register import scoring_graph

        graph = scoring_graph(trained)
        if graph is None:
            raise RuntimeError("this Keras backend cannot export the scoring graph to ONNX")
        trained = replace(trained, model=OnnxScorer(graph))
    trained_s = time.perf_counter() - start
    truth = frame.labels.iloc[train_rows:]
    results = []
    for method in methods:
        t0 = time.perf_counter()
        params = (
            recipe.threshold_params if method == recipe.threshold else METHOD_PARAMS.get(method, {})
        )
        out = decide(frame, train_rows, with_threshold(trained, method, params))
        if out_dir is not None:
            target = (out_dir / method / name) if len(methods) > 1 else out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            out.to_csv(target, index=False)
        pred = out["anomaly"].to_numpy()
        counts = point_counts(truth["anomaly"].to_numpy(), pred)
        tally = nab_tally(
            truth["changepoint"].to_numpy(), changepoints(pred), frame.ts_ms[train_rows:]
        )
        results.append(
            FileResult(name, method, counts, tally, trained_s + time.perf_counter() - t0)
        )
    return results


def evaluate_skab(
    data_dir: str | Path,
    out_dir: str | Path | None,
    recipe: Recipe | None = None,
    methods: Sequence[str] | None = None,
    *,
    files: Sequence[str] | None = None,
    train_rows: int = TRAIN_ROWS,
    workers: int = 2,
    progress: bool = True,
    compiled: Path | None = None,
    options: TrainOptions,
    runtime: str = "keras",
) -> SkabReport:
    """Run the SKAB protocol on every file (or the named ``files``) and score it.

    ``recipe`` defaults to the default (best benchmarked) one, trained with ``options``
    (``Settings.train_options()``); ``methods`` (default: the recipe's own threshold method) are
    compared on the same trained model per file.
    With more than one method, each method's predictions go under ``out_dir/<method>/``.
    ``runtime`` "onnx" decides through each model's exported scoring graph (``evaluate_file``).
    """
    data_dir = Path(data_dir)
    every = skab_files(data_dir)
    names = list(files) if files is not None else every
    recipe = recipe or Recipe()
    methods = list(methods or [recipe.threshold])
    out = Path(out_dir) if out_dir is not None else None
    start = time.perf_counter()
    results: list[FileResult] = []
    bar = tqdm(total=len(names), desc="SKAB files", unit="file", disable=not progress)
    # Set in each worker as it starts, before it imports Keras: with several workers, each
    # computes on one thread, so they share the cores instead of fighting over them.
    worker = (Path(compiled) if compiled else None, workers > 1)
    with ProcessPoolExecutor(
        max(1, workers), mp_context=get_context("spawn"), initializer=start_worker, initargs=worker
    ) as pool:
        futures = [
            pool.submit(
                evaluate_file, data_dir, n, out, recipe, methods, train_rows, options, runtime
            )
            for n in names
        ]
        for done in as_completed(futures):
            results.extend(done.result())
            bar.update()
    bar.close()
    results.sort(key=lambda r: (r.method, r.name))
    return SkabReport(results, time.perf_counter() - start, workers, methods, every)


def format_report(report: SkabReport) -> str:
    """Our figures per method and subset beside the published leaderboard, as a Markdown table."""
    head = "| Detector | Files | F1 | FAR % | MAR % | NAB standard | NAB low FP | NAB low FN |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for s in report.summaries():
        lines.append(
            f"| sensorwatch LSTM-AE, {s.method} ({s.subset}) | {s.files} | {s.f1:.2f} | {s.far:.2f} | {s.mar:.2f} "
            f"| {s.nab['standard']:.2f} | {s.nab['low_fp']:.2f} | {s.nab['low_fn']:.2f} |"
        )
    nab = dict(NAB_LEADERBOARD)
    for name, f1, far, mar in LEADERBOARD:
        score = f"{nab.pop(name):.2f}" if name in nab else "–"
        lines.append(
            f"| {name} (leaderboard) | 34 | {f1:.2f} | {far:.2f} | {mar:.2f} | {score} | – | – |"
        )
    for name, score in nab.items():
        lines.append(f"| {name} (leaderboard) | 34 | – | – | – | {score:.2f} | – | – |")
    files = len({r.name for r in report.results})
    lines.append(
        f"\nWall time: {report.wall_s:.1f} s for {files} files, {report.workers} worker(s)."
    )
    return "\n".join(lines)
