"""How anomalies sit in MLflow, read back as records: one run per alarm under a parent run per
(model version, day), tagged so MLflow's own search and UI make a review queue.

A reviewer's verdict is the run's ``verdict`` tag: set in the UI (run page → Tags) or with
``sensorwatch review label``, it is the same tag. The CLI also keeps each change as a tag of its
own (``verdict.history.0001``, …: who, when, old → new, note); a change made in the UI has no
such entry until the next ``label``, and is shown as made "in MLflow" meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlparse

from sensorwatch.schemas.records import iso_ms, ms_of

KIND_TAG = "sensorwatch.kind"  # "anomaly", "day" or "tuning"
EVENT_TAG = "sensorwatch.event_id"
ASSET_TAG = "sensorwatch.asset"
MODEL_TAG = "sensorwatch.model_name"
VERSION_TAG = "sensorwatch.model_version"
DAY_TAG = "sensorwatch.day"
STATE_TAG = "sensorwatch.state"  # "open" or "cleared"
TOP_TAG = "sensorwatch.top_channels"
END_TAG = "sensorwatch.end"
VERDICT_TAG = "verdict"
HISTORY_PREFIX = "verdict.history."
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
PEAK_OVER = "peak/threshold"  # metric: how far over its threshold the alarm peaked

UNREVIEWED = "unreviewed"
VERDICTS = ("confirmed", "false-positive", "investigate")
PLOT, TABLE, EVENT_FILE = "anomaly.png", "anomalies.json", "event.json"
IN_MLFLOW = "in MLflow"  # who made a change the CLI did not see being made


def day_of(ms: int) -> str:
    """The UTC day of epoch milliseconds (an anomaly's day is its start's).

    >>> day_of(1_714_564_800_000)
    '2024-05-01'
    """
    return iso_ms(ms)[:10]


def ui_base(review_ui_url: str, tracking_uri: str) -> str:
    """Where MLflow's UI answers: the setting, else a tracking server's own address, else
    ``mlflow ui``'s default.

    >>> ui_base("", "http://mlflow:5000/"), ui_base("", "sqlite:///x.db"), ui_base("http://ui/", "sqlite:///x.db")
    ('http://mlflow:5000', 'http://127.0.0.1:5000', 'http://ui')
    """
    if review_ui_url:
        return review_ui_url.rstrip("/")
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"


def run_name(asset: str, start: str) -> str:
    """An anomaly run's name: its asset and the time of day it started (its day is in its parent's
    name and its ``start``).

    >>> run_name("pump-04", "2026-11-22T16:07:35.000Z")
    'pump-04 16:07:35'
    """
    return f"{asset[:40]} {start[11:19]}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def experiment_url(base: str, experiment_id: str, search: str = "") -> str:
    """The experiment's page in the UI, with a run search filled in."""
    return f"{base}/#/experiments/{experiment_id}/runs" + (
        f"?searchFilter={quote(search)}" if search else ""
    )


@dataclass(frozen=True)
class Change:
    """One verdict change: who, when, from what to what, and why."""

    who: str
    when: str
    old: str
    new: str
    note: str = ""

    def encode(self) -> str:
        return json.dumps(
            {
                "who": self.who,
                "when": self.when,
                "old": self.old,
                "new": self.new,
                "note": self.note,
            }
        )

    @classmethod
    def decode(cls, text: str) -> Change:
        doc = json.loads(text)
        return cls(
            str(doc.get("who", "")),
            str(doc.get("when", "")),
            str(doc.get("old", "")),
            str(doc.get("new", "")),
            str(doc.get("note", "")),
        )


def history_of(tags: dict[str, str]) -> list[Change]:
    """The verdict's changes in order; one made in the UI since the last recorded change shows
    as made ``IN_MLFLOW`` at an unknown time.

    >>> change = Change("ana", "t1", "unreviewed", "investigate")
    >>> tags = {"verdict": "confirmed", "verdict.history.0001": change.encode()}
    >>> [(c.who, c.old, c.new) for c in history_of(tags)]
    [('ana', 'unreviewed', 'investigate'), ('in MLflow', 'investigate', 'confirmed')]
    """
    changes = []
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        try:
            changes.append(Change.decode(tags[key]))
        except (ValueError, TypeError, AttributeError):
            changes.append(Change(IN_MLFLOW, "", "", "", f"unreadable entry {key}"))
    last = changes[-1].new if changes else UNREVIEWED
    now = tags.get(VERDICT_TAG, UNREVIEWED)
    if now != last:
        changes.append(Change(IN_MLFLOW, "", last, now))
    return changes


def history_key(n: int) -> str:
    return f"{HISTORY_PREFIX}{n:04d}"


@dataclass
class Anomaly:
    """One alarm as its run in MLflow holds it."""

    run_id: str
    experiment_id: str
    event_id: str
    asset: str
    start: str
    end: str
    peak: float
    threshold: float
    margin: float
    windows: int
    top_channels: str
    model_name: str
    model_version: str
    day: str
    state: str
    verdict: str
    note: str = ""
    artifact_uri: str = ""
    history: list[Change] = field(default_factory=list)
    shares: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (ms_of(self.end) - ms_of(self.start)) / 1000 if self.start and self.end else 0.0

    @property
    def start_ms(self) -> int:
        return ms_of(self.start)

    @property
    def end_ms(self) -> int:
        return ms_of(self.end)

    @classmethod
    def of(cls, run: Any) -> Anomaly:
        """From an MLflow ``Run`` logged by the review sink."""
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        return cls(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            event_id=tags.get(EVENT_TAG, ""),
            asset=tags.get(ASSET_TAG, params.get("asset", "")),
            start=params.get("start", ""),
            end=tags.get(END_TAG, params.get("start", "")),
            peak=float(metrics.get("peak_score", float("nan"))),
            threshold=float(metrics.get("threshold", float("nan"))),
            margin=float(metrics.get("margin", 0.0)),
            windows=int(metrics.get("windows", 0)),
            top_channels=tags.get(TOP_TAG, ""),
            model_name=tags.get(MODEL_TAG, ""),
            model_version=tags.get(VERSION_TAG, ""),
            day=tags.get(DAY_TAG, ""),
            state=tags.get(STATE_TAG, ""),
            verdict=tags.get(VERDICT_TAG, UNREVIEWED),
            note=tags.get(NOTE_TAG, ""),
            artifact_uri=run.info.artifact_uri or "",
            history=history_of(tags),
            shares={
                k.removeprefix("share."): v for k, v in metrics.items() if k.startswith("share.")
            },
        )

    def row(self) -> dict[str, Any]:
        """A row of the day's table and of ``review list``."""
        return {
            "event_id": self.event_id,
            "asset": self.asset,
            "start": self.start,
            "end": self.end,
            "duration_s": round(self.duration_s, 3),
            "peak_score": self.peak,
            "threshold": self.threshold,
            "margin": self.margin,
            "windows": self.windows,
            "top_channels": self.top_channels,
            "model_version": self.model_version,
            "state": self.state,
            "verdict": self.verdict,
            "run_id": self.run_id,
        }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
