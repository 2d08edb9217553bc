"""The champion/challenger gate's rule, and what a promotion records on the version."""

from __future__ import annotations

import math

import pytest

from sensorwatch.pipeline.jobs.gate import Figures, gate
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
        ((2.5, 1.00), (2.0, 0.75), False),  # better recall, but more false alarms
        ((2.0, 0.78), (2.0, 0.75), False),  # better recall, not by the margin
    ],
)
def test_the_gate_wants_one_figure_better_by_its_margin_and_the_other_no_worse(
    challenger, champion, better
) -> None:
    verdict, why = gate(figures("2", *challenger), figures("1", *champion), SETTINGS)
    assert verdict is better and "challenger 2 vs champion 1" in why


def test_without_labels_recall_counts_as_equal_and_without_a_champion_the_challenger_wins() -> None:
    unlabelled = figures("2", 1.0, math.nan), figures("1", 2.0, math.nan)
    assert gate(*unlabelled, SETTINGS)[0] is True
    assert gate(figures("2", 9.0, 0.0), None, SETTINGS) == (True, "no champion yet")


def test_a_challenger_that_misses_confirmed_anomalies_the_champion_finds_is_not_promoted() -> None:
    from dataclasses import replace

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
