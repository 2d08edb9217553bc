"""Is this data fit to train on? A Great Expectations suite over archived readings.

The suite checks what a model learns from: the columns and their types, no missing values, each
channel inside the range the champion was trained on (with a margin), time rising within each
asset, gaps and missing readings against the learned cadence, and enough rows per asset. A failed
run names each failing expectation and what it observed, in one line each.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("sensorwatch.schemas")


@dataclass(frozen=True)
class TrainingDataRules:
    """What training data must satisfy; ``ranges`` per channel, ``interval_ms`` the learned cadence."""

    channels: list[str]
    ranges: dict[str, tuple[float, float]]
    interval_ms: float
    max_gap_intervals: float = 10.0
    max_missing_rate: float = 0.2
    min_rows: int = 100
    max_long_gaps: float = 0.001  # share of steps allowed to be longer than max_gap_intervals


@dataclass
class ValidationReport:
    """The outcome: passed or not, one line per failing expectation, GX's result as JSON."""

    success: bool
    failures: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    docs: Path | None = None  # GX Data Docs (HTML) of the run, when asked for

    def summary(self) -> str:
        if self.success:
            return f"training data valid: {self.rows} rows"
        return f"training data invalid ({len(self.failures)} expectation(s) failed): " + "; ".join(
            self.failures
        )


def validation_frame(
    frames: dict[str, pd.DataFrame],
    channels: list[str],
    interval_ms: float,
    max_gap_intervals: float = 10.0,
) -> pd.DataFrame:
    """One table of every asset's readings, with what the suite checks per asset derived beside
    them: the step to the previous reading (ms and learned intervals), the step inside a run
    (``run_step_intervals``: a gap past ``max_gap_intervals`` ends the run, as it resets the
    service's window, and counts as one step: an outage is not missing readings, and the
    long-gap check limits how many there are) and the asset's row count."""
    parts = []
    for asset, frame in frames.items():
        part = frame.copy()
        part.insert(0, "asset_id", asset)
        step = part["ts_ms"].diff() if "ts_ms" in part else pd.Series(np.nan, index=part.index)
        part["ts_step_ms"] = step.fillna(interval_ms)
        part["gap_intervals"] = part["ts_step_ms"] / interval_ms
        gaps = part["gap_intervals"]
        part["run_step_intervals"] = gaps.where(gaps <= max_gap_intervals, 1.0)
        part["asset_rows"] = len(part)
        parts.append(part)
    if not parts:
        return pd.DataFrame(
            columns=[
                "asset_id",
                *("ts_ms", *channels, "ts_step_ms", "gap_intervals", "run_step_intervals"),
                "asset_rows",
            ]
        )
    return pd.concat(parts, ignore_index=True)


def _suite(rules: TrainingDataRules, present: set[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    found = [gxe.ExpectColumnToExist(column=c) for c in ("asset_id", "ts_ms", *rules.channels)]
    checks: list[Any] = []
    if "ts_ms" in present:
        checks += [
            gxe.ExpectColumnValuesToNotBeNull(column="ts_ms"),
            gxe.ExpectColumnValuesToBeInTypeList(
                column="ts_ms", type_list=["int64", "Int64", "int32"]
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="ts_step_ms", min_value=1
            ),  # rising in each asset
            gxe.ExpectColumnValuesToBeBetween(
                column="gap_intervals",
                max_value=rules.max_gap_intervals,
                mostly=1 - rules.max_long_gaps,
            ),
            gxe.ExpectColumnMeanToBeBetween(  # missing readings, inside runs
                column="run_step_intervals", max_value=1 / (1 - rules.max_missing_rate)
            ),
        ]
    for c in rules.channels:
        if c not in present:
            continue
        lo, hi = rules.ranges.get(c, (None, None))
        checks += [
            gxe.ExpectColumnValuesToNotBeNull(column=c),
            gxe.ExpectColumnValuesToBeInTypeList(
                column=c, type_list=["float64", "float32", "Float64"]
            ),
        ]
        if lo is not None or hi is not None:
            checks.append(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi))
    checks.append(gxe.ExpectColumnMinToBeBetween(column="asset_rows", min_value=rules.min_rows))
    return found + checks


def validate_training_data(
    frames: dict[str, pd.DataFrame], rules: TrainingDataRules, docs: Path | None = None
) -> ValidationReport:
    """Run the suite on ``frames`` (asset → readings with ``ts_ms`` and the channels); with
    ``docs``, GX also renders its Data Docs (HTML) of the run into that folder."""
    import great_expectations as gx
    from great_expectations.checkpoint.actions import ValidationAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    table = validation_frame(frames, rules.channels, rules.interval_ms, rules.max_gap_intervals)
    if table.empty:
        return ValidationReport(False, ["no readings at all"], rows=0)
    with tempfile.TemporaryDirectory() as project:
        context = (
            gx.get_context(mode="file", project_root_dir=project)
            if docs
            else gx.get_context(mode="ephemeral")
        )
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = context.data_sources.add_pandas("archive").add_dataframe_asset("readings")
        definition = batch.add_batch_definition_whole_dataframe("training window")
        suite = context.suites.add(gx.ExpectationSuite(name="sensorwatch training data"))
        for expectation in _suite(rules, set(table.columns)):
            suite.add_expectation(expectation)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(data=definition, suite=suite, name="training data")
        )
        actions: list[ValidationAction] = (
            [gx.checkpoint.UpdateDataDocsAction(name="data docs")] if docs else []
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="training data",
                validation_definitions=[validation],
                actions=actions,
                result_format={"result_format": "SUMMARY"},
            )
        )
        run = next(iter(checkpoint.run(batch_parameters={"dataframe": table}).run_results.values()))
        if docs:
            site = Path(project) / "gx" / "uncommitted" / "data_docs" / "local_site"
            shutil.copytree(site, docs, dirs_exist_ok=True)
    failures = [_describe(r) for r in run.results if not r.success]
    return ValidationReport(
        bool(run.success), failures, run.to_json_dict(), rows=len(table), docs=docs
    )


def _describe(result: Any) -> str:
    """``expect_…(column=…, bounds)``: what was observed, in one line."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",) and v is not None}
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    seen = result.result or {}
    if "observed_value" in seen:
        observed = f"observed {seen['observed_value']}"
    elif "unexpected_count" in seen:
        examples = ", ".join(
            repr(_plain(v)) for v in (seen.get("partial_unexpected_list") or [])[:3]
        )
        observed = (
            f"{seen['unexpected_count']} unexpected ({seen.get('unexpected_percent', 0):.2f}%)"
        )
        observed += f", e.g. {examples}" if examples else ""
    else:
        observed = "failed"
    return f"{config.type}({args}): {observed}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
