"""Review in MLflow, end to end: the service on the simulator logs each alarm to a real ``mlflow
server``; the runs, plots, tables and links are checked through MLflow's REST API; verdicts set
with the CLI and through the API (as the UI sets them) meet in ``sensorwatch review``; and an
MLflow outage mid-run loses no anomaly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from helpers import fresh, read_all, run_until, wait_for
from mlflow_server import MlflowServer

from sensorwatch.models.mlflow_store import Store
from sensorwatch.models.register import log_training
from sensorwatch.models.registry import load_detector
from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.review.sink import ReviewSink
from sensorwatch.pipeline.review.verdicts import Reviews
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.schemas.events import decode_event

pytestmark = pytest.mark.integration

# Not the default experiment: the browser tests count the runs of that one on the same server.
EXPERIMENT = "review-anomalies"


@pytest.fixture
def server(mlflow_server: MlflowServer):
    """The session's server (each test its own model name); the outage test kills it and starts it
    again: up again after each test whatever happened."""
    yield mlflow_server
    mlflow_server.ensure_up()


def _faulty_stream(plant_after_training, readings: int = 1200):
    """The champion's plant after its training data, every pump with one fault, an hour ago."""
    sim, _ = plant_after_training()
    frame, faults = sim.with_faults(readings, faults_per_asset=1, kinds=("level_shift", "spike"))
    shift = int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    frame["ts_ms"] += shift
    return frame


def _settings(service_settings, server: MlflowServer, name: str):
    return fresh(service_settings).model_copy(
        update={
            "tracking_uri": server.uri,
            "model_name": name,
            "review_experiment": EXPERIMENT,
            "mlflow_timeout_s": 3.0,
            "mlflow_retries": 0,
        }
    )


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["data"].get("tags", []) if t["key"] == key), None)


def _anomaly_runs(server: MlflowServer, experiment_id: str, model: str) -> dict[str, dict]:
    """The anomaly runs of one registered model's versions, by event id."""
    found = server.api(
        "runs/search",
        {
            "experiment_ids": [experiment_id],
            "max_results": 1000,
            "filter": f"tags.`sensorwatch.kind` = 'anomaly' and tags.`sensorwatch.model_name` = '{model}'",
        },
    ).get("runs", [])
    return {_tag(r, "sensorwatch.event_id"): r for r in found}


def _cli(server: MlflowServer, name: str, *args: str) -> str:
    env = {
        **os.environ,
        "SENSORWATCH_TRACKING_URI": server.uri,
        "SENSORWATCH_MODEL_NAME": name,
        "SENSORWATCH_REVIEW_EXPERIMENT": EXPERIMENT,
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", "review", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_alarm_is_a_run_with_plot_and_table_and_verdicts_from_cli_and_ui_meet(
    server, service_settings, champion, plant_after_training
) -> None:
    store = Store(server.uri, model_name="review", timeout_s=5, retries=1)
    version = log_training(champion.trained, store, alias="champion").version
    settings = _settings(service_settings, server, "review")
    sent = produce_frame(settings, _faulty_stream(plant_after_training), progress=False)
    service = Service.on_kafka(settings, load_detector(store, "champion"), store)
    run_until(service, sent)  # stopping drains the review queue into MLflow

    events = [decode_event(r.value) for r in read_all(settings, settings.anomalies_topic)]
    opened = {e.event_id: e for e in events if e.kind == "opened"}
    cleared = {e.event_id: e for e in events if e.kind == "cleared"}
    assert len(opened) >= 2

    exp = server.api("experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"][
        "experiment_id"
    ]
    runs = _anomaly_runs(server, exp, "review")
    assert set(runs) == set(opened)  # one run per alarm, none twice
    for event_id, run in runs.items():
        e = cleared.get(event_id, opened[event_id])
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert params["asset"] == e.asset_id and params["start"] == e.window_start
        assert metrics["peak_score"] == pytest.approx(e.score) and metrics[
            "threshold"
        ] == pytest.approx(e.threshold)
        assert metrics["peak_score"] > metrics["threshold"] > 0 and metrics["margin"] > 1
        assert (
            _tag(run, "verdict") == "unreviewed"
            and _tag(run, "sensorwatch.model_version") == version
        )
        assert _tag(run, "mlflow.parentRunId")
        artifacts = {
            f["path"]
            for f in server.api("artifacts/list", run_id=run["info"]["run_id"]).get("files", [])
        }
        assert {"anomaly.png", "event.json"} <= artifacts
        assert server.artifact(run["info"]["run_id"], "anomaly.png")[:8] == b"\x89PNG\r\n\x1a\n"
        if event_id in cleared:  # the alarm's run lasts as long as the alarm
            assert (
                run["info"]["status"] == "FINISHED" and _tag(run, "sensorwatch.state") == "cleared"
            )
            assert (
                int(run["info"]["end_time"]) - int(run["info"]["start_time"])
                == e.end_ms - e.start_ms
            )
    parents = {_tag(r, "mlflow.parentRunId") for r in runs.values()}
    for parent in parents:
        table = json.loads(server.artifact(parent, "anomalies.json"))
        children = [r for r in runs.values() if _tag(r, "mlflow.parentRunId") == parent]
        assert len(table["data"]) == len(children) and "duration_s" in table["columns"]
    tags = {
        t["key"]: t["value"]
        for t in server.api("model-versions/get", name="review", version=version)[
            "model_version"
        ].get("tags", [])
    }
    assert (
        f"experiments/{exp}" in tags["sensorwatch.anomalies"]
    )  # the version's page links to its anomalies

    first, second = sorted(opened)[:2]
    _cli(
        server, "review", "label", first[:8], "confirmed", "--note", "bearing noise", "--by", "ana"
    )
    server.api(
        "runs/set-tag",
        {"run_id": runs[second]["info"]["run_id"], "key": "verdict", "value": "false-positive"},
    )
    listed = _cli(server, "review", "list", "--limit", "100")
    lines = {
        line.split()[0]: line for line in listed.splitlines() if line[:8] in (first[:8], second[:8])
    }
    assert "confirmed" in lines[first[:8]] and "false-positive" in lines[second[:8]]
    reviews = Reviews(store, EXPERIMENT)
    assert [a.event_id for a in reviews.list(verdict="confirmed")] == [first]
    assert [
        a.event_id for a in reviews.list(verdict="false-positive", asset=opened[second].asset_id)
    ] == [second]
    _cli(server, "review", "label", second[:8], "investigate", "--by", "ana")
    again = _cli(server, "review", "label", second[:8], "investigate", "--by", "bo")
    assert "already investigate" in again  # the same verdict twice: no change, no history line
    shown = _cli(server, "review", "show", second[:8])
    history = shown[shown.index("history") :].splitlines()[1:]
    assert len(history) == 2
    assert "in MLflow" in history[0] and "unreviewed → false-positive" in history[0]
    assert "ana" in history[1] and "false-positive → investigate" in history[1]
    assert f"#/experiments/{exp}/runs/{runs[second]['info']['run_id']}" in shown
    # The day's table follows the labels.
    for event_id, verdict in ((first, "confirmed"), (second, "investigate")):
        table = json.loads(
            server.artifact(_tag(runs[event_id], "mlflow.parentRunId"), "anomalies.json")
        )
        column = table["columns"].index("verdict")
        assert {row[0]: row[column] for row in table["data"]}[event_id] == verdict
    # The link `review list` prints opens a saved view of the experiment filtered on the verdict
    # asked for.
    listed = _cli(server, "review", "list", "--verdict", "investigate")
    key = listed.split("viewStateShareKey=")[1].split()[0]
    views = {
        t["key"]: t["value"]
        for t in server.api("experiments/get", experiment_id=exp)["experiment"]["tags"]
    }
    state = json.loads(json.loads(views[f"mlflow.sharedViewState.{key}"])["state"])
    assert "tags.`verdict` = 'investigate'" in state["searchFilter"]
    assert "tags.`verdict`" in state["selectedColumns"]


def test_mlflow_down_mid_run_the_service_keeps_scoring_and_the_held_anomalies_appear_when_it_is_back(
    server, service_settings, champion, plant_after_training
) -> None:
    store = Store(server.uri, model_name="outage-review", timeout_s=3, retries=0)
    log_training(champion.trained, store, alias="champion")
    settings = _settings(service_settings, server, "outage-review")
    frame = _faulty_stream(plant_after_training)
    service = Service.on_kafka(settings, load_detector(store, "champion"), store)
    sink = next(s for s in service.checkpoint.sinks if isinstance(s, ReviewSink))
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    try:
        server.stop()  # MLflow goes away before the faults arrive
        sent = produce_frame(settings, frame, progress=False)
        assert wait_for(lambda: service.stats.records >= sent, 120)  # scoring goes on
        events = [decode_event(r.value) for r in read_all(settings, settings.anomalies_topic)]
        held = sink.pending
        assert held == len(events) > 0 and sink.logged == 0  # every event waits for MLflow
        server.start()
        assert wait_for(lambda: sink.pending == 0, 90)
    finally:
        stop.set()
        runner.join(60)
    assert sink.logged == held and sink.dropped == 0
    exp = server.api("experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"][
        "experiment_id"
    ]
    assert set(_anomaly_runs(server, exp, "outage-review")) == {e.event_id for e in events}
