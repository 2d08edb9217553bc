"""The champion/challenger gate's rule, and what a promotion records on the version."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from sensorwatch.pipeline.jobs.figures import Figures
from sensorwatch.pipeline.jobs.gate import gate
from sensorwatch.pipeline.settings import Settings

SETTINGS = Settings(promote_margin_false_alarms=0.5, promote_margin_recall=0.05)


def figures(version: str, false_per_10k: float, recall: float) -> Figures:
    found = 0 if math.isnan(recall) else round(recall * 4)
    return Figures(version, 10_000, 9_000, int(false_per_10k), false_per_10k, 4, found, recall, 0.5)


@pytest.mark.parametrize(
    "challenger, champion, better",
    [
        ((1.0, 0.75), (2.0, 0.75), True),  # fewer false alarms by the margin, same recall
        ((1.8, 0.75), (2.0, 0.75), False),  # fewer, but not by the margin
        ((1.0, 0.50), (2.0, 0.75), False),  # fewer false alarms, but recall lost
        ((2.0, 1.00), (2.0, 0.75), True),  # better recall by the margin, no more false alarms
        ((2.4, 1.00), (2.0, 0.75), True),  # better recall, more false alarms within the margin
        ((2.6, 1.00), (2.0, 0.75), False),  # better recall, but more false alarms than the margin
        ((2.0, 0.78), (2.0, 0.75), False),  # better recall, not by the margin
    ],
)
def test_the_gate_wants_one_figure_better_by_its_margin_and_the_other_no_worse(
    challenger, champion, better
) -> None:
    verdict, why = gate(figures("2", *challenger), figures("1", *champion), SETTINGS)
    assert verdict is better and "challenger 2 vs champion 1" in why


def injected(f: Figures, found: int, of: int = 12) -> Figures:
    return replace(f, injected=of, injected_found=found, injected_recall=found / of)


def test_without_evidence_of_recall_the_gate_refuses_and_without_a_champion_the_challenger_wins() -> (
    None
):
    # No labels, no reviews and no injected fault: fewer false alarms alone prove nothing.
    better, why = gate(figures("2", 1.0, math.nan), figures("1", 2.0, math.nan), SETTINGS)
    assert not better and why.startswith("no evidence of recall: no fault could be injected")
    # Faults were injected, but neither version found one.
    blind = injected(figures("2", 0.0, math.nan), 0), injected(figures("1", 3.0, math.nan), 0)
    better, why = gate(*blind, SETTINGS)
    assert not better and why.startswith("no evidence of recall: neither version found any")
    assert gate(figures("2", 9.0, 0.0), None, SETTINGS) == (True, "no champion yet")


def test_a_challenger_that_misses_injected_faults_is_never_promoted_whatever_its_false_alarms() -> (
    None
):
    # Unlabelled: the champion's real detections count as its false alarms; the challenger has
    # none because it finds nothing.
    challenger = injected(figures("2", 0.0, math.nan), 6)
    champion = injected(figures("1", 7.08, math.nan), 12)
    better, why = gate(challenger, champion, SETTINGS)
    assert not better and why.startswith("misses injected faults the champion finds")
    assert "injected faults found 6/12 vs 12/12" in why
    # One fault in twenty less is within the recall margin (5 %): fewer false alarms then win.
    within = (
        injected(figures("2", 0.0, math.nan), 19, 20),
        injected(figures("1", 7.0, math.nan), 20, 20),
    )
    assert gate(*within, SETTINGS)[0] is True
    # More injected faults found, by the margin, at no more false alarms.
    keener = injected(figures("2", 1.0, math.nan), 12), injected(figures("1", 1.0, math.nan), 9)
    better, why = gate(*keener, SETTINGS)
    assert better and why.startswith("better recall at no more false alarms than the margin")


def test_a_challenger_that_misses_confirmed_anomalies_the_champion_finds_is_not_promoted() -> None:
    # Far fewer false alarms, but it misses half the anomalies people confirmed.
    challenger = replace(
        figures("2", 0.0, 1.0), reviewed=4, reviewed_recall=0.5, reviewed_precision=1.0
    )
    champion = replace(
        figures("1", 3.0, 1.0), reviewed=4, reviewed_recall=1.0, reviewed_precision=0.5
    )
    better, why = gate(challenger, champion, SETTINGS)
    assert not better and why.startswith("misses confirmed anomalies the champion finds")
    assert "on 4 reviewed anomalies recall 50% vs 100%, precision 100% vs 50%" in why
    better, why = gate(replace(challenger, reviewed_recall=1.0), champion, SETTINGS)
    assert better and "fewer false alarms" in why


@pytest.mark.integration
def test_a_managed_promotion_moves_the_alias_and_records_who_when_why_and_the_figures(
    champion, tmp_path
) -> None:
    from mlflow import MlflowClient

    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import alias_version
    from sensorwatch.pipeline.jobs.retrain import promote
    from sensorwatch.pipeline.stores import store_of

    settings = Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_root=str(tmp_path / "a"),
        model_name="g",
    )
    store = store_of(settings)
    log_training(champion.trained, store, alias="champion")
    second = log_training(champion.trained, store).version
    verdict = {
        "better": True,
        "why": "fewer false alarms",
        "challenger": {"recall": 1.0},
        "champion": {"recall": 0.5},
    }

    assert (
        promote(settings.model_copy(update={"promotion_mode": "manual"}), second, verdict) is False
    )
    assert alias_version(store, "champion") == "1" and alias_version(store, "challenger") == second
    assert (
        promote(settings, second, {**verdict, "better": False}) is False
        and alias_version(store, "champion") == "1"
    )
    assert promote(settings, second, verdict) is True and alias_version(store, "champion") == second
    tags = MlflowClient().get_model_version("g", second).tags
    assert (
        tags["sensorwatch.promoted_by"] == "retraining gate"
        and tags["sensorwatch.promoted_why"] == "fewer false alarms"
    )
    assert (
        '"recall": 1.0' in tags["sensorwatch.promoted_figures"] and tags["sensorwatch.promoted_at"]
    )


def test_injected_faults_are_of_every_kind_sized_in_each_channel_spread_and_repeatable() -> None:
    from sensorwatch.models.faults import FAULT_KINDS, spread
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator
    from sensorwatch.pipeline.jobs.injection import Injection, injected_copy

    frame = Simulator(assets=2, seed=5).normal(4000)
    frames = {
        a: f.drop(columns="asset_id").reset_index(drop=True) for a, f in frame.groupby("asset_id")
    }
    how = Injection(seed=7, gap=120, tolerance_ms=60_000)
    copy, faults = injected_copy(frames, list(CHANNELS), how)
    again, same = injected_copy(frames, list(CHANNELS), how)
    assert same == faults and all(copy[a].equals(again[a]) for a in copy)
    assert {f.kind for f in faults} == set(FAULT_KINDS) and len(faults) == 2 * len(FAULT_KINDS)
    for asset, original in frames.items():
        ts = original["ts_ms"].to_numpy()
        inside = np.zeros(len(ts), bool)
        for f in (f for f in faults if f.asset_id == asset):
            rows = (ts >= f.start_ms) & (ts < f.end_ms)
            assert rows[: how.gap].sum() == 0  # the first readings stay clean
            inside |= rows
            moved = copy[asset].loc[rows, list(f.channels)] - original.loc[rows, list(f.channels)]
            assert np.abs(moved.to_numpy()).max() > 0, f
            if f.kind == "level_shift":  # 30-45 % of the channel's own spread
                size = spread(original[list(f.channels)].to_numpy())[0]
                assert 0.3 * size <= abs(moved.to_numpy()[0, 0]) <= 0.45 * size + 1e-9
        assert copy[asset].loc[~inside, CHANNELS].equals(original.loc[~inside, CHANNELS])


def _archive(settings: Settings, frame: pd.DataFrame) -> str:
    """``frame`` (asset_id, ts_ms, channels) written as the archive's Parquet readings of its day;
    the day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    day = datetime.fromtimestamp(int(frame["ts_ms"].min()) / 1000, UTC).date().isoformat()
    folder = os.path.join(settings.archive_uri, "readings", f"day={day}")
    os.makedirs(folder)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f"{folder}/part-0.parquet")
    return day


@pytest.mark.integration
def test_the_gate_refuses_a_blind_challenger_on_injected_faults_and_promotes_a_seeing_one(
    champion, stream, tmp_path
) -> None:
    """The issue's day: a held-out day with real faults nobody labelled. A challenger that finds
    nothing has no false alarms, the champion's real finds count as its false alarms; the gate
    refuses the blind one on the faults it injects, and logs them to the challenger's run."""
    from mlflow import MlflowClient

    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import SCALE_TAG, alias_version, set_alias
    from sensorwatch.pipeline.jobs.gate import evaluate
    from sensorwatch.pipeline.jobs.retrain import promote
    from sensorwatch.pipeline.stores import store_of

    settings = Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_root=str(tmp_path / "a"),
        archive_uri=str(tmp_path / "archive"),
        model_name="blind",
        retrain_lookback_days=2,
    )
    frame = pd.DataFrame(
        [{"asset_id": r.asset_id, "ts_ms": r.ts_ms, **r.values} for r in stream.readings]
    )
    day = _archive(settings, frame)
    store = store_of(settings)
    log_training(champion.trained, store, alias="champion")
    blind = log_training(champion.trained, store, tags={SCALE_TAG: "1e9"}).version  # out of reach

    verdict = evaluate(settings, day, blind)
    client = MlflowClient()
    run = client.get_run(client.get_model_version("blind", blind).run_id)
    m = run.data.metrics
    print(f"\nblind challenger: {verdict['why']}")
    assert not verdict["better"] and verdict["why"].startswith("misses injected faults")
    assert m["gate.injected_faults"] >= 8 and m["gate.challenger.injected_found"] == 0
    assert m["gate.champion.injected_recall"] >= 0.5, m
    # What fooled the old rule: the blind one has fewer "false alarms" (the real, unlabelled faults).
    assert m["gate.challenger.false_alarms"] == 0 < m["gate.champion.false_alarms"]
    assert run.data.tags["sensorwatch.gate"] == "not better"
    said = client.download_artifacts(run.info.run_id, "gate.json")
    gate_json = pd.read_json(said, typ="series")
    assert len(gate_json["faults"]) == m["gate.injected_faults"]
    assert {"found_by_champion", "found_by_challenger", "kind"} <= set(gate_json["faults"][0])
    png = client.download_artifacts(run.info.run_id, "gate_injected_faults.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert promote(settings, blind, verdict) is False and alias_version(store) == "1"

    # Had the blind one been promoted (as the old gate did), a retrain that sees again wins. The
    # day's real faults labelled, its finds there are no false alarms.
    set_alias(store, blind)
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        [
            {"asset_id": f.asset_id, "start_ms": f.start_ms, "end_ms": f.end_ms}
            for f in stream.faults
        ]
    ).to_csv(labels, index=False)
    # A day this short (10,400 readings): one false alarm is 1.7 per 10,000; the margin allows 2.
    labelled = settings.model_copy(
        update={"labels_path": labels, "promote_margin_false_alarms": 2.0}
    )
    seeing = log_training(champion.trained, store).version
    verdict = evaluate(labelled, day, seeing)
    print(f"seeing challenger: {verdict['why']}")
    assert verdict["better"] and verdict["why"].startswith("better recall at no more false alarms")
    m = client.get_run(client.get_model_version("blind", seeing).run_id).data.metrics
    assert m["gate.challenger.injected_recall"] >= 0.5 and m["gate.champion.injected_found"] == 0
    assert promote(labelled, seeing, verdict) is True and alias_version(store) == seeing


@pytest.mark.integration
def test_promoting_a_version_that_reads_readings_otherwise_is_refused_unless_forced(
    champion, tmp_path
) -> None:
    from mlflow import MlflowClient

    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import alias_version
    from sensorwatch.pipeline.stores import store_of

    env = {
        **os.environ,
        "SENSORWATCH_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "SENSORWATCH_ARTIFACT_ROOT": str(tmp_path / "a"),
        "SENSORWATCH_MODEL_NAME": "misfit",
    }
    settings = Settings(
        tracking_uri=env["SENSORWATCH_TRACKING_URI"],
        artifact_root=env["SENSORWATCH_ARTIFACT_ROOT"],
        model_name="misfit",
    )
    store = store_of(settings)
    log_training(champion.trained, store, alias="champion")
    spec = champion.trained.spec
    slower = replace(champion.trained, spec=replace(spec, interval_ms=2 * spec.interval_ms))
    other = log_training(slower, store).version

    def promote(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sensorwatch.pipeline.cli", "promote", other, *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = promote()
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, refused.stderr
    assert f"cadence {2 * spec.interval_ms} ms instead of {spec.interval_ms} ms" in line
    assert "--force" in line and alias_version(store) == "1"
    forced = promote("--force", "--reason", "new sensors sample every 2 s")
    assert forced.returncode == 0, forced.stderr
    assert alias_version(store) == other
    tags = MlflowClient().get_model_version("misfit", other).tags
    assert tags["sensorwatch.promoted_forced"].startswith("over champion version 1: cadence")
