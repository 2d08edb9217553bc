"""The SMD protocol on a real machine of the benchmark: the baselines and the recipe under the
same protocol, written and scored as the report says.

The data comes from the ``smd_dir`` setting (``../shared/datasets/smd`` beside the project, or
``SENSORWATCH_SMD_DIR``). These tests fail rather than skip when it is missing: CI must run them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorwatch.models.metrics import runs
from sensorwatch.pipeline.errors import SourceError
from sensorwatch.pipeline.jobs.baselines import baseline
from sensorwatch.pipeline.jobs.smd import (
    METHODS,
    MachineResult,
    SmdReport,
    evaluate_machine,
    format_smd,
)
from sensorwatch.pipeline.jobs.smd_data import read_machine, smd_machines
from sensorwatch.pipeline.jobs.tally import tally
from sensorwatch.pipeline.settings import Settings

MACHINE = "machine-3-4"  # the shortest test half with several labelled intervals


@pytest.fixture(scope="module")
def smd_dir() -> Path:
    path = Settings().smd_dir
    if not path.is_absolute():
        path = Path(__file__).resolve().parent.parent / path
    assert (path / "labels.json").is_file(), f"SMD data not found at {path.resolve()}"
    return path


def test_the_benchmark_has_15_machines_and_a_wrong_folder_says_so(smd_dir, tmp_path) -> None:
    machines = smd_machines(smd_dir)
    assert len(machines) == 15 and machines[0] == "machine-1-2"
    with pytest.raises(SourceError, match="no SMD data at"):
        smd_machines(tmp_path)


def test_labels_are_the_intervals_of_labels_json(smd_dir) -> None:
    _, test, labels = read_machine(smd_dir, MACHINE)
    intervals = json.loads((smd_dir / "labels.json").read_text())[f"test/{MACHINE}.csv.gz"]
    assert len(runs(labels.astype(bool))) == len(intervals)
    assert len(labels) == len(test) and 0 < labels.mean() < 0.5


def test_tally_counts_points_events_and_false_alarms_without_point_adjustment() -> None:
    truth = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0])
    pred = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0])
    t = tally(truth, pred)
    # One of three points of the first event: no point adjustment makes it three.
    assert (t.counts.tp, t.counts.fn, t.counts.fp) == (1, 4, 2)
    assert (t.events, t.found, t.false_alarms) == (2, 1, 1)
    assert t.event_recall == 0.5 and t.false_alarms_per_10k == pytest.approx(1e4 / 12)


def test_the_report_pools_all_machines_and_each_half() -> None:
    # Three machines: every other one in sorted order tunes (a, c), the rest is held out (b).
    truth = np.array([0, 1, 1, 0])
    preds = {"a": [0, 1, 1, 0], "b": [1, 0, 0, 0], "c": [0, 1, 0, 0]}
    results = [
        MachineResult(name, method, tally(truth, np.array(pred)), 1.0)
        for name, pred in preds.items()
        for method in METHODS
    ]
    report = SmdReport(results, 3.0, 1)
    assert report.pooled("pca").counts.tp == 3
    assert report.pooled("pca", ["a", "c"]).counts.tp == 3
    assert report.pooled("pca", ["b"]).counts.fp == 1
    rows = {line.split(" | ")[0]: line for line in format_smd(report).splitlines()}
    f1 = 3 / (3 + (1 + 3) / 2)  # all: tp 3, fp 1, fn 3
    assert rows["| **pooled**"].startswith(f"| **pooled** | {f1:.3f} | 0.67 |")
    assert rows["| pooled, tuning half (2)"].startswith(
        f"| pooled, tuning half (2) | {3 / 3.5:.3f} |"
    )
    assert rows["| pooled, held-out half (1)"].startswith(
        "| pooled, held-out half (1) | 0.000 | 0.00 |"
    )


@pytest.mark.parametrize("method", ["pca", "iforest"])
def test_a_baseline_is_fitted_on_the_train_half_only(smd_dir, method) -> None:
    train, test, labels = read_machine(smd_dir, MACHINE)
    scores, threshold = baseline(method, train.values, test.values)
    again, same = baseline(method, train.values, test.values[::-1])
    assert same == threshold  # the test half moves no threshold
    assert np.allclose(again[::-1], scores)  # and each point is scored on its own
    assert tally(labels, scores > threshold).found > 0


@pytest.mark.integration
def test_one_machine_end_to_end_writes_what_it_scores(smd_dir, tmp_path) -> None:
    settings = Settings(epochs=1, train_stride=50)
    results = evaluate_machine(
        smd_dir, MACHINE, tmp_path, settings.recipe(), settings.train_options(progress=False)
    )
    assert sorted(r.method for r in results) == ["iforest", "pca", "sensorwatch"]
    written = pd.read_csv(tmp_path / f"{MACHINE}.csv")
    _, test, labels = read_machine(smd_dir, MACHINE)
    assert list(written.columns) == ["datetime", "score", "anomaly"]
    assert len(written) == len(test)
    ours = next(r for r in results if r.method == "sensorwatch").tally
    assert ours == tally(labels, written["anomaly"].to_numpy())
