"""The review queue as ``sensorwatch review`` sees it: find anomalies, show one, set its verdict.

A verdict is the anomaly run's ``verdict`` tag, whoever sets it; ``label`` also records the
change (who, when, old → new, note) as a tag of its own, first writing down any change made in
MLflow's UI since the last one it recorded, so the history has every step.
"""

from __future__ import annotations

import re
from typing import Any

from sensorwatch.models.mlflow_store import Store, mlflow_for
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.review import queue_view, runs

EVENT_ID = re.compile(r"^[0-9a-f-]{4,36}$")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Reviews:
    """Anomaly runs of one experiment in one MLflow store."""

    def __init__(
        self, store: Store, experiment: str = "sensorwatch-anomalies", ui_url: str = ""
    ) -> None:
        from mlflow import MlflowClient

        mlflow_for(store)
        self.store, self.experiment = store, experiment
        self.client = MlflowClient(tracking_uri=store.tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id: str | None = found.experiment_id if found is not None else None
        self.ui = runs.ui_base(ui_url, store.tracking_uri)

    def list(
        self,
        day: str | None = None,
        asset: str | None = None,
        version: str | None = None,
        verdict: str | None = None,
        limit: int = 100,
    ) -> list[runs.Anomaly]:
        """Anomalies, newest first, that match every filter given."""
        if day is not None and not DAY.match(day):
            raise UserError(f"day: not YYYY-MM-DD: {day!r}")
        if verdict is not None and verdict not in (runs.UNREVIEWED, *runs.VERDICTS):
            raise UserError(
                f"verdict: one of {', '.join((runs.UNREVIEWED, *runs.VERDICTS))}, got {verdict!r}"
            )
        if self.experiment_id is None:
            return []
        found = self._search(queue_view.queue_filter(day, asset, version, verdict), limit)
        if asset is not None and "'" in asset:  # a name MLflow's filter cannot quote: matched here
            found = [a for a in found if a.asset == asset]
        return found

    def _search(self, query: str, limit: int) -> list[runs.Anomaly]:
        assert self.experiment_id is not None
        found = self.client.search_runs(
            [self.experiment_id],
            query,
            max_results=max(1, min(limit, 50_000)),
            order_by=["attributes.start_time DESC"],
        )
        return [runs.Anomaly.of(r) for r in found]

    def find(self, ref: str) -> runs.Anomaly:
        """The anomaly an event id (or its first characters, as ``list`` shows them) or run id names."""
        ref = ref.strip().lower()
        if self.experiment_id is None:
            raise UserError(
                f"no anomalies yet: MLflow experiment {self.experiment!r} does not exist"
            )
        if RUN_ID.match(ref):
            from mlflow.exceptions import MlflowException

            try:
                run = self.client.get_run(ref)
            except MlflowException:
                run = None
            if run is not None and run.data.tags.get(runs.KIND_TAG) == "anomaly":
                return runs.Anomaly.of(run)
        if not EVENT_ID.match(ref):
            raise UserError(
                f"not an anomaly id: {ref!r} (an event id, its first 8 characters, or a run id)"
            )
        found = self._search(
            f"tags.`{runs.KIND_TAG}` = 'anomaly' and tags.`{runs.EVENT_TAG}` LIKE '{ref}%'", 3
        )
        if not found:
            raise UserError(f"no anomaly {ref!r} in experiment {self.experiment!r}")
        if len(found) > 1:
            raise UserError(f"{ref!r} names more than one anomaly: give more of its id")
        return found[0]

    def label(self, ref: str, verdict: str, by: str, note: str = "") -> runs.Anomaly:
        """Set the verdict of the anomaly ``ref`` names, recording the change (and any made in the UI
        before it), and write its day's table again. The verdict it already has is no change: no
        history line (a note given with it is still kept in the run's note)."""
        from mlflow.entities import RunTag

        from sensorwatch.pipeline.review.mlflow_log import write_table

        if verdict not in runs.VERDICTS:
            raise UserError(f"verdict: one of {', '.join(runs.VERDICTS)}, got {verdict!r}")
        anomaly = self.find(ref)
        run_tags = self.client.get_run(anomaly.run_id).data.tags
        recorded = sum(1 for k in run_tags if k.startswith(runs.HISTORY_PREFIX))
        when = runs.now_iso()
        # A change made in the UI since the last one recorded, then this one (if it is one).
        changes = anomaly.history[recorded:]
        if verdict != anomaly.verdict:
            changes.append(runs.Change(by, when, anomaly.verdict, verdict, note))
        tags = [
            RunTag(runs.history_key(recorded + i + 1), c.encode()) for i, c in enumerate(changes)
        ]
        if verdict != anomaly.verdict:
            tags += [
                RunTag(runs.VERDICT_TAG, verdict),
                RunTag("verdict.by", by),
                RunTag("verdict.at", when),
            ]
        if note:
            text = f"{verdict} ({by}, {when}): {note}"
            tags.append(RunTag(runs.NOTE_TAG, f"{anomaly.note}\n\n{text}".strip()))
        if tags:
            self.client.log_batch(anomaly.run_id, tags=tags)
        if changes and run_tags.get(runs.PARENT_TAG):
            write_table(self.client, anomaly.experiment_id, run_tags[runs.PARENT_TAG])
        return self.find(anomaly.run_id)

    def url(self, anomaly: runs.Anomaly) -> str:
        return runs.run_url(self.ui, anomaly.experiment_id, anomaly.run_id)

    def queue_url(
        self,
        verdict: str | None = runs.UNREVIEWED,
        day: str | None = None,
        asset: str | None = None,
        version: str | None = None,
    ) -> str:
        """The review queue in MLflow's UI: the anomalies that match every filter given (by default
        those not yet reviewed), in a table of what a reviewer decides on (``queue_view.queue_view``),
        saved on the experiment as one of its views."""
        search = queue_view.queue_filter(day, asset, version, verdict)
        if self.experiment_id is None:  # nothing logged yet: the plain search
            return runs.experiment_url(self.ui, "0", search)
        what = [f"{k} {v}" for k, v in (("day", day), ("asset", asset), ("version", version)) if v]
        name = ", ".join([verdict or "all anomalies", *what])
        tags = self.client.get_experiment(self.experiment_id).tags
        key = queue_view.save_view(self.client, self.experiment_id, search, name, tags)
        return queue_view.view_url(self.ui, self.experiment_id, key)

    def reviewed(self, limit: int = 50_000) -> list[runs.Anomaly]:
        """Every anomaly with a verdict of confirmed or false-positive."""
        return [
            a for v in ("confirmed", "false-positive") for a in self.list(verdict=v, limit=limit)
        ]


def summary(a: runs.Anomaly) -> dict[str, Any]:
    """What ``review list`` prints of one anomaly."""
    return {
        "id": a.event_id[:8],
        "day": a.day,
        "asset": a.asset,
        "start": a.start[11:19],
        "duration": _duration(a.duration_s),
        "peak": f"{a.peak:.3g}",
        "threshold": f"{a.threshold:.3g}",
        "top channels": a.top_channels,
        "version": a.model_version,
        "state": a.state,
        "verdict": a.verdict,
    }


def details(a: runs.Anomaly, url: str) -> str:
    """What ``review show`` prints of one anomaly: its figures, top channels, plot, link
    (``url``) and verdict history."""
    lines = [
        f"anomaly {a.event_id}  ({a.state})",
        f"  asset        {a.asset}",
        f"  from         {a.start}  to {a.end}  ({a.duration_s:g} s, {a.windows} anomalous windows)",
        f"  peak score   {a.peak:.4g}  threshold {a.threshold:.4g}  margin {a.margin:.4g}"
        " (fires below this threshold scale)",
        f"  top channels {a.top_channels}",
        "  shares       "
        + ", ".join(f"{c} {v:.0%}" for c, v in sorted(a.shares.items(), key=lambda kv: -kv[1])),
        f"  model        {a.model_name} version {a.model_version}",
        f"  verdict      {a.verdict}",
        f"  plot         {a.artifact_uri.rstrip('/')}/anomaly.png",
        f"  in MLflow    {url}",
    ]
    if a.history:
        lines.append("  history")
        for c in a.history:
            note = f"  {c.note}" if c.note else ""
            lines.append(f"    {c.when or 'time unknown':25} {c.who:16} {c.old} → {c.new}{note}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """
    >>> _duration(42.0), _duration(600.0), _duration(7325.0)
    ('42 s', '10 min', '2 h 02 min')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
