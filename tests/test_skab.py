"""The SKAB protocol end to end on four of its files, and causal detection on a real file.

The data comes from the ``skab_dir`` setting (``../shared/datasets/skab`` beside the project, or
``SENSORWATCH_SKAB_DIR``). These tests fail rather than skip when it is missing: CI must run them.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.metrics import changepoints, nab_scores, nab_tally, point_counts
from pipeline.csvsource import read_sensor_csv
from pipeline.detect import DetectConfig, detect_file
from pipeline.settings import Settings
from pipeline.skab import CHOSEN, TRAIN_ROWS, evaluate_skab, format_report, halves, skab_files

FILES = ["other/1.csv", "valve1/0.csv", "valve1/9.csv", "valve2/1.csv"]


@pytest.fixture(scope="module")
def skab_dir() -> Path:
    path = Settings().skab_dir
    assert (path / "valve1").is_dir(), (
        f"SKAB data not found at {path.resolve()}: put the benchmark at ../shared/datasets/skab "
        "or point SENSORWATCH_SKAB_DIR at it"
    )
    return path


def test_the_benchmark_has_its_34_files_and_two_fixed_halves(skab_dir: Path) -> None:
    files = skab_files(skab_dir)
    assert len(files) == 34 and not any("anomaly-free" in f for f in files)
    tune, held = halves(files)
    assert len(tune) == len(held) == 17 and not set(tune) & set(held)
    assert tune[0] == "other/1.csv" and held[0] == "other/10.csv"


def test_evaluate_four_files(skab_dir: Path, tmp_path: Path) -> None:
    report = evaluate_skab(skab_dir, tmp_path, files=FILES, workers=2, progress=False)
    assert sorted(r.name for r in report.results) == sorted(FILES)
    for result in report.results:
        written = pd.read_csv(tmp_path / result.name)
        source = read_sensor_csv(skab_dir / result.name)
        assert list(written.columns) == ["datetime", "score", "anomaly"]
        assert len(written) == len(source) - TRAIN_ROWS
        assert set(written["anomaly"].unique()) <= {0, 1}
        # The report's figures are those of the written predictions.
        truth = source.labels.iloc[TRAIN_ROWS:]
        assert point_counts(truth["anomaly"], written["anomaly"]) == result.counts
        tally = nab_tally(truth["changepoint"].to_numpy(), changepoints(written["anomaly"]), source.ts_ms[TRAIN_ROWS:])
        assert nab_scores(tally) == nab_scores(result.nab)
    summary = report.summary("reference")
    # Far better than flagging everything (F1 0.70 on SKAB, with FAR 100 %), and than the null
    # detector's NAB of 0.
    assert summary.f1 > 0.75 and summary.far < 50 and summary.mar < 30
    assert summary.nab["standard"] > 10
    table = format_report(report)
    assert "| Conv-AE (leaderboard) | 34 | 0.78 | 13.55 | 28.02 |" in table
    assert "reference (tuning half)" in table and "reference (held-out half)" in table


def test_detection_is_causal(skab_dir: Path, tmp_path: Path) -> None:
    """Cutting a file after row 700 changes none of the decisions up to it."""
    full = skab_dir / "valve1/0.csv"
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(full.read_text().splitlines(keepends=True)[: 1 + 700]))
    config = DetectConfig().with_(**CHOSEN)
    whole, part = detect_file(full, TRAIN_ROWS, config), detect_file(cut, TRAIN_ROWS, config)
    assert len(part) == 300
    pd.testing.assert_frame_equal(whole.iloc[:300], part)
    assert np.isfinite(part["score"]).all()


def test_level_score_sees_a_shift_an_autoencoder_reconstructs() -> None:
    """A model that reconstructs anything perfectly scores a shifted window 0; "+level" does not."""
    import keras

    from models.compiled import compile_forward

    window, channels = 10, 2
    perfect = keras.Sequential([keras.Input((window, channels)), keras.layers.Identity()])
    mean, std, scale = np.array([1.0, -1.0]), np.array([2.0, 0.5]), np.array([1.0, 4.0])
    steady = np.broadcast_to(mean, (window, channels))
    shifted = steady + np.array([2 * 2.0, 0.0])  # channel 0 two training std (2.0) up
    windows = np.stack([steady, shifted]).astype(np.float32)
    plain, _ = compile_forward(perfect, mean, std, scale, "max")(windows)
    level, errors = compile_forward(perfect, mean, std, scale, "max+level")(windows)
    np.testing.assert_allclose(plain, [0.0, 0.0], atol=1e-6)
    # Window length times the squared shift in training standard deviations, over the error scale.
    np.testing.assert_allclose(errors[1], [window * 2.0**2 / 1.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(level, [0.0, window * 4.0], rtol=1e-5)
