"""The anomalies' runs in MLflow: what the review sink's worker writes for each event.

One run per alarm (found again by its event id), under a parent run per (model version, day)
whose table is written again from its runs whenever they change; the plot and the event as
artifacts; a link from the model version to its anomalies. Any MLflow error is raised to the
worker, which keeps the event and tries again.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorwatch.models.mlflow_store import Store, experiment_id, mlflow_for
from sensorwatch.pipeline.review import plot, queue_view, runs
from sensorwatch.schemas.records import AnomalyEvent

if TYPE_CHECKING:
    from sensorwatch.pipeline.review.context import Flagged

log = logging.getLogger("sensorwatch.pipeline")

HOW_TO = (
    "Verdict: set the `verdict` tag (pencil by Tags) to confirmed, false-positive or investigate, "
    'or run `sensorwatch review label {ref} confirmed --note "why"`. The plot is anomaly.png under Artifacts.'
)


class AnomalyLog:
    """Writes anomaly events to one experiment of one MLflow store (from one thread)."""

    def __init__(
        self, store: Store, experiment: str = "sensorwatch-anomalies", ui_url: str = ""
    ) -> None:
        self.store, self.experiment = store, experiment
        self.ui = runs.ui_base(ui_url, store.tracking_uri)
        self.dirty: set[str] = set()  # parent runs whose table is behind
        self._runs: dict[str, str] = {}  # event id → run id
        self._parents: dict[tuple[str, str], str] = {}  # (version, day) → parent run id
        self._linked: set[str] = set()  # model versions that link to their anomalies
        self._client: Any = None
        self._experiment_id: str | None = None

    def _connect(self) -> tuple[Any, str]:
        if self._client is None:
            from mlflow import MlflowClient

            mlflow_for(self.store, writing=True)
            self._client = MlflowClient(tracking_uri=self.store.tracking_uri)
        if self._experiment_id is None:
            self._experiment_id = experiment_id(self._client, self.store, self.experiment)
        return self._client, self._experiment_id

    def log(self, item: Flagged) -> None:
        """One event: its run made or found, its figures, plot and event file; completed when cleared."""
        from mlflow.entities import Metric, Param, RunTag

        client, exp = self._connect()
        e = item.event
        run_id = self._runs.get(e.event_id)
        fresh = False
        if run_id is None:
            found = client.search_runs(
                [exp], f"tags.`{runs.EVENT_TAG}` = '{e.event_id}'", max_results=1
            )
            if found:
                run_id, fresh = found[0].info.run_id, "start" not in found[0].data.params
            else:
                run_id, fresh = self._new_run(client, exp, e), True
        now = int(time.time() * 1000)
        step = 1 if e.kind == "cleared" else 0
        figures = {
            "peak_score": e.score,
            "threshold": e.threshold,
            runs.PEAK_OVER: round(e.score / e.threshold, 2) if e.threshold > 0 else 0.0,
            "margin": e.margin,
            "windows": float(e.windows),
            "duration_s": e.duration_s,
            **{f"share.{c}": v for c, v in e.contributions.items()},
        }
        params = (
            [
                Param("asset", e.asset_id[:500]),
                Param("start", e.window_start),
                Param("model_version", e.model_version),
                Param("event_id", e.event_id),
            ]
            if fresh
            else []
        )
        tags = [
            RunTag(runs.STATE_TAG, "cleared" if e.kind == "cleared" else "open"),
            RunTag(runs.END_TAG, e.window_end),
            RunTag(runs.TOP_TAG, _top(e)),
        ]
        client.log_batch(
            run_id, [Metric(k, float(v), now, step) for k, v in figures.items()], params, tags
        )
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / runs.EVENT_FILE).write_text(
                json.dumps({**e.to_dict(), "duration_s": e.duration_s}, indent=2)
            )
            if item.window is not None:
                (Path(tmp) / runs.PLOT).write_bytes(self._plot(item))
            client.log_artifacts(run_id, tmp)
        if e.kind == "cleared":
            client.set_terminated(run_id, "FINISHED", end_time=max(e.end_ms, e.start_ms))
        self._runs[e.event_id] = run_id
        self._link(client, exp, e.model_version)

    def _new_run(self, client: Any, exp: str, e: AnomalyEvent) -> str:
        parent = self._parent(client, exp, e.model_version, runs.day_of(e.start_ms))
        version_url = f"{self.ui}/#/models/{self.store.model_name}/versions/{e.model_version}"
        tags = {
            runs.KIND_TAG: "anomaly",
            runs.EVENT_TAG: e.event_id,
            runs.ASSET_TAG: e.asset_id[:5000],
            runs.MODEL_TAG: self.store.model_name,
            runs.VERSION_TAG: e.model_version,
            runs.DAY_TAG: runs.day_of(e.start_ms),
            runs.VERDICT_TAG: runs.UNREVIEWED,
            runs.PARENT_TAG: parent,
            "sensorwatch.model_version_url": version_url,
            runs.NOTE_TAG: HOW_TO.format(ref=e.event_id[:8]),
        }
        name = runs.run_name(e.asset_id, e.window_start)
        run = client.create_run(exp, start_time=e.start_ms, tags=tags, run_name=name)
        self.dirty.add(parent)
        return run.info.run_id

    def _parent(self, client: Any, exp: str, version: str, day: str) -> str:
        key = (version, day)
        if key not in self._parents:
            query = (
                f"tags.`{runs.KIND_TAG}` = 'day' and tags.`{runs.VERSION_TAG}` = '{version}' "
                f"and tags.`{runs.DAY_TAG}` = '{day}'"
            )
            found = [
                r
                for r in client.search_runs([exp], query)
                if r.data.tags.get(runs.MODEL_TAG) == self.store.model_name
            ]
            if found:
                self._parents[key] = found[0].info.run_id
            else:
                tags = {
                    runs.KIND_TAG: "day",
                    runs.VERSION_TAG: version,
                    runs.DAY_TAG: day,
                    runs.MODEL_TAG: self.store.model_name,
                    runs.LOGGED_ARTIFACTS_TAG: json.dumps([{"path": runs.TABLE, "type": "table"}]),
                    runs.NOTE_TAG: f"Anomalies flagged on {day} by {self.store.model_name} version {version}: "
                    f"the table is {runs.TABLE}; each anomaly is a run below this one.",
                }
                start = int(np.datetime64(day, "ms").astype(np.int64))
                run = client.create_run(
                    exp,
                    start_time=start,
                    tags=tags,
                    run_name=f"{self.store.model_name} v{version} {day}",
                )
                self._parents[key] = run.info.run_id
        return self._parents[key]

    def tables(self) -> None:
        """Each parent run whose anomalies changed gets its table written again, from its runs."""
        client, exp = self._connect()
        for parent in sorted(self.dirty):
            write_table(client, exp, parent)
            self.dirty.discard(parent)

    def _link(self, client: Any, exp: str, version: str) -> None:
        """The model version's page links to its anomalies (once per version and process)."""
        if version in self._linked or not version.isdigit():
            return
        self._linked.add(version)
        search = queue_view.queue_filter(version=version)
        key = queue_view.save_view(
            client, exp, search, f"version {version}", client.get_experiment(exp).tags
        )
        url = queue_view.view_url(self.ui, exp, key)
        try:
            client.set_model_version_tag(
                self.store.model_name, version, "sensorwatch.anomalies", url
            )
        except (
            Exception
        ) as exc:  # a version this registry does not hold (a local model): no page to link from
            log.debug("no anomalies link on version %s: %s", version, exc)

    def _plot(self, item: Flagged) -> bytes:
        e, detector = item.event, item.detector
        window = np.asarray(item.window, np.float32)
        recon = detector.reconstruct(window[None])[0]
        errors = item.errors if item.errors is not None else np.zeros(window.shape[1])
        title = (
            f"{e.asset_id}  {e.window_start[:19]} → {e.window_end[:19]}  peak {e.score:.3g} > threshold "
            f"{e.threshold:.3g}  model v{e.model_version}  ({e.kind})"
        )
        channels = detector.spec.channels
        context = item.context
        if context is None or not len(context.ts_ms) or item.worst_ms is None:
            return plot.anomaly_png(window, recon, errors, channels, e.threshold, title)
        worst = (window, recon, item.worst_ms)
        span = (e.start_ms, e.end_ms)
        cleared = e.kind == "cleared"
        return plot.context_png(context, span, cleared, worst, errors, channels, e.threshold, title)


def write_table(client: Any, experiment_id: str, parent: str) -> None:
    """The day's table (``anomalies.json`` on its parent run) written again from its anomaly runs:
    after a new anomaly, and after a verdict changes."""
    import pandas as pd

    children = client.search_runs(
        [experiment_id], f"tags.`{runs.PARENT_TAG}` = '{parent}'", max_results=10_000
    )
    rows = sorted(
        (runs.Anomaly.of(r).row() for r in children), key=lambda row: (row["start"], row["asset"])
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / runs.TABLE
        pd.DataFrame(rows).to_json(path, orient="split", index=False)
        client.log_artifact(parent, str(path))
    client.log_metric(parent, "anomalies", float(len(rows)))


def _top(e: AnomalyEvent, n: int = 2) -> str:
    """The channels that drove the alarm: ``flow 71%, pressure 13%``."""
    ranked = sorted(e.contributions.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{c} {v:.0%}" for c, v in ranked)
