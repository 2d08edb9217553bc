"""Airflow under its own scheduler, as a deployment runs it: PostgreSQL from the system's packages (a
cluster of the test's own), ``airflow db migrate``, then the scheduler, the DAG processor and the
API server as separate processes with the LocalExecutor, the DAG folder at ``dags/``. MLflow is a
real ``mlflow server`` on another database of the same PostgreSQL, its artifacts in an S3 store
(moto's server). The plant is ``test_retraining``'s: a champion trained on three days, then a normal
day, a worn day and a day with labelled faults archived through the service on the embedded
broker. A retraining run triggered through the REST API, and the retraining run the drift check's
trigger starts on the worn day, are run by the scheduler to success.

Not in the default run (a few minutes): ``make airflow-test`` (``-m scheduler``)."""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from airflow_run import airflow_env
from helpers import fresh, wait_for
from test_retraining import (
    ASSETS,
    INTERVAL_S,
    PER_DAY,
    _archive_through_the_service,
    _env,
    _settings,
)

from sensorwatch.pipeline.dev.tansu import free_port

pytestmark = [pytest.mark.integration, pytest.mark.scheduler, pytest.mark.timeout(1800)]

RETRAIN, DRIFT = "retrain_lstm_autoencoder", "sensorwatch_drift_check"
# Not due for years (the next 29 February after the DAGs' start date): only the test's runs run.
NEVER = "0 0 29 2 *"


def _day_ms(day) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)


def _started(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


class Postgres:
    """A PostgreSQL cluster of its own (initdb under a temp folder, a loopback port, trust auth for
    user ``sensorwatch``), run by the ``postgres`` user when the tests run as root."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
        assert found[-1], "no PostgreSQL server: apt-get install postgresql (make airflow-test)"
        self.bin = Path(found[-1]).parent
        # Not under pytest's temp folder: the server's own user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="sensorwatch-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://sensorwatch@127.0.0.1:{self.port}/{database}"

    def start(self, *databases: str) -> Postgres:
        data = self.root / "data"
        run = dict(check=True, capture_output=True, timeout=300)
        initdb = [str(self.bin / "initdb"), "-D", str(data), "-U", "sensorwatch", "--auth=trust"]
        subprocess.run([*self.as_user, *initdb, "-E", "UTF8", "--no-sync"], **run)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log")]
        subprocess.run([*self.as_user, *pg_ctl, "-w", "-o", options, "start"], **run)
        psql = [
            str(self.bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "sensorwatch",
        ]
        for database in databases:
            subprocess.run([*psql, "-d", "postgres", "-c", f"CREATE DATABASE {database}"], **run)
        return self

    def stop(self) -> None:
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate"]
        subprocess.run([*self.as_user, *pg_ctl, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Deployment:
    api: str  # Airflow's API server
    day: str  # today (UTC): the day the drift check's retraining run holds out
    env: dict[str, str]
    logs: Path
    s3: str  # the S3 store's endpoint

    def call(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        """Airflow's REST API (``/api/v2/…``); the simple auth manager makes every caller admin."""
        request = urllib.request.Request(
            f"{self.api}/api/v2/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.call(f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def finished(self, dag_id: str, run_id: str, timeout_s: float = 900) -> dict:
        """The run once the scheduler has finished it: its state and each task's."""
        run: dict = {}

        def done() -> bool:
            run.update(self.call(f"dags/{dag_id}/dagRuns/{run_id}"))
            return run["state"] in ("success", "failed")

        assert wait_for(done, timeout_s, every_s=2), (run, self.tail())
        tasks = self.call(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {"state": run["state"], "tasks": {t["task_id"]: t["state"] for t in tasks}}

    def tail(self) -> str:
        """The end of every process's log and of the task logs, for a failure's message."""
        said = []
        for log in sorted(self.logs.rglob("*.log")):
            said.append(f"--- {log}\n" + log.read_text(errors="replace")[-2500:])
        return "\n".join(said)[-20000:]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, service_settings) -> Iterator[Deployment]:
    from sensorwatch.models.registry import load_detector
    from sensorwatch.pipeline.archive import read_archive
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset
    from sensorwatch.pipeline.jobs.train import train_and_register
    from sensorwatch.pipeline.stores import store_of

    root = tmp_path_factory.mktemp("scheduler")
    logs = root / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    postgres = Postgres()
    try:
        postgres.start("airflow", "mlflow")

        # The S3 stand-in, a bucket for MLflow's artifacts, and MLflow's server proxying them.
        s3_port, mlflow_port, api_port = free_port(), free_port(), free_port()
        s3 = f"http://127.0.0.1:{s3_port}"
        keys = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        procs.append(
            _started([sys.executable, "-m", "moto.server", "-p", str(s3_port)], logs / "s3.log")
        )
        assert wait_for(lambda: _answers(f"{s3}/"), 60, every_s=0.3), (logs / "s3.log").read_text()
        import boto3

        boto3.client(
            "s3",
            endpoint_url=s3,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ).create_bucket(Bucket="mlflow")
        mlflow_cmd = [
            *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"),
            *("--port", str(mlflow_port), "--workers", "1", "--serve-artifacts"),
            *("--backend-store-uri", postgres.url("mlflow", "postgresql+psycopg2")),
            *("--artifacts-destination", "s3://mlflow/artifacts"),
        ]
        mlflow_env = {
            **os.environ,
            **keys,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        procs.append(_started(mlflow_cmd, logs / "mlflow.log", mlflow_env))

        # The settings of every DAG run: test_retraining's, on the MLflow server.
        today = datetime.now(UTC).date()
        env = _env(
            root,
            tracking_uri=f"http://127.0.0.1:{mlflow_port}",
            archive_uri=str(root / "archive"),
            promotion_mode="manual",
            drift_alpha="0.01",  # as test_retraining's drift test: about 30 blocks a day
            retrain_schedule=NEVER,
            drift_schedule=NEVER,
        )
        env.pop("SENSORWATCH_ARTIFACT_ROOT")  # the server keeps the artifacts
        settings = _settings(env)

        # Airflow's database is migrated while the champion trains.
        home = root / "airflow"
        home.mkdir()
        airflow = {
            **airflow_env(home),
            **{k: v for k, v in env.items() if k.startswith("SENSORWATCH_")},
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow", "postgresql+psycopg2"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs / "tasks"),
        }
        migrate = _started(
            [sys.executable, "-m", "airflow", "db", "migrate"], logs / "migrate.log", airflow
        )
        procs.append(migrate)
        assert wait_for(lambda: _answers(f"http://127.0.0.1:{mlflow_port}/health"), 180, 0.5), (
            logs / "mlflow.log"
        ).read_text()[-3000:]

        # test_retraining's plant, to today: three days the champion learns, then the archive: a
        # normal day, a worn one (every channel 1.5 standard deviations off) and today, with a
        # labelled fault per pump.
        sim = Simulator(
            assets=ASSETS, seed=11, interval_s=INTERVAL_S, start_ms=_day_ms(today - timedelta(5))
        )
        history = sim.normal(3 * PER_DAY)
        train_and_register(
            settings,
            series_by_asset(history),
            list(CHANNELS),
            "history",
            promote=True,
            progress=False,
        )
        champion = load_detector(store_of(settings), "champion")
        normal, worn = sim.normal(PER_DAY), sim.normal(PER_DAY)
        for channel, std in zip(champion.spec.channels, champion.spec.std):
            if channel in CHANNELS:
                worn[channel] += 1.5 * std
        faulty, faults = sim.with_faults(
            PER_DAY, faults_per_asset=1, kinds=("level_shift", "spike")
        )
        pd.DataFrame(
            [{"asset_id": f.asset_id, "start_ms": f.start_ms, "end_ms": f.end_ms} for f in faults]
        ).to_csv(root / "labels.csv", index=False)
        # Today is archived whole, so its readings may lie up to a day ahead of the clock (the
        # service refuses readings further ahead than max_future_s: 5 minutes by default).
        live = fresh(service_settings).model_copy(
            update={"archive_uri": str(root / "archive"), "max_future_s": 86_400}
        )
        sent = _archive_through_the_service(live, pd.concat([normal, worn, faulty]), champion)
        assert sent == 3 * PER_DAY * ASSETS
        archived = read_archive(live.archive_uri)
        assert sum(len(f) for f in archived.values()) == sent, {
            a: len(f) for a, f in archived.items()
        }

        assert migrate.wait(600) == 0, (logs / "migrate.log").read_text()[-3000:]
        airflow_cmd = [sys.executable, "-m", "airflow"]
        api = ["api-server", "-H", "127.0.0.1", "-p", str(api_port), "-w", "1"]
        for name, args in (
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
            ("api-server", api),
        ):
            procs.append(_started([*airflow_cmd, *args], logs / f"{name}.log", airflow))
        found = Deployment(f"http://127.0.0.1:{api_port}", today.isoformat(), env, logs, s3)

        def parsed() -> bool:
            try:
                return all(not found.call(f"dags/{d}")["is_paused"] for d in (RETRAIN, DRIFT))
            except (OSError, urllib.error.HTTPError, KeyError):
                return False

        assert wait_for(parsed, 300, every_s=2), found.tail()
        yield found
    finally:
        _stop(procs)
        postgres.stop()


def test_the_scheduler_runs_a_triggered_retraining_to_success(deployment: Deployment) -> None:
    # Yesterday's retraining: trained on the normal day, the worn day held out.
    yesterday = (datetime.fromisoformat(deployment.day) - timedelta(days=1)).date()
    run = deployment.call(
        f"dags/{RETRAIN}/dagRuns", {"logical_date": f"{yesterday.isoformat()}T00:00:00Z"}
    )
    outcome = deployment.finished(RETRAIN, run["dag_run_id"])
    assert outcome == {
        "state": "success",
        "tasks": dict.fromkeys(["validate", "train", "evaluate", "promote", "tune"], "success"),
    }, deployment.tail()

    from mlflow import MlflowClient

    client = MlflowClient(deployment.env["SENSORWATCH_TRACKING_URI"])
    challenger = client.get_model_version("plant", "2")
    assert challenger.tags["sensorwatch.logical_date"] == yesterday.isoformat()
    assert challenger.tags["sensorwatch.role"] == "challenger"
    assert str(client.get_model_version_by_alias("plant", "champion").version) == "1"  # manual
    # The artifacts went through the tracking server to the S3 store.
    assert {a.path for a in client.list_artifacts(challenger.run_id)} >= {"gate.json"}
    import boto3

    bucket = boto3.client(
        "s3",
        endpoint_url=deployment.s3,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).list_objects_v2(Bucket="mlflow")
    keys = [o["Key"] for o in bucket.get("Contents", [])]
    assert any(challenger.run_id in k and k.endswith("gate.json") for k in keys), keys[:20]


def test_the_drift_checks_trigger_starts_a_retraining_the_scheduler_runs(
    deployment: Deployment,
) -> None:
    before = {r["dag_run_id"] for r in deployment.runs(RETRAIN)}
    # At midnight: its window is the worn day.
    run = deployment.call(f"dags/{DRIFT}/dagRuns", {"logical_date": f"{deployment.day}T00:00:00Z"})
    outcome = deployment.finished(DRIFT, run["dag_run_id"])
    assert outcome == {
        "state": "success",
        "tasks": {"drifted": "success", "retrain": "success"},
    }, deployment.tail()

    started = [r for r in deployment.runs(RETRAIN) if r["dag_run_id"] not in before]
    assert len(started) == 1, started
    retrain = deployment.finished(RETRAIN, started[0]["dag_run_id"])
    assert retrain["state"] == "success" and set(retrain["tasks"].values()) == {"success"}, (
        retrain,
        deployment.tail(),
    )

    from mlflow import MlflowClient

    client = MlflowClient(deployment.env["SENSORWATCH_TRACKING_URI"])
    today = client.get_model_version("plant", "3")  # trained on the worn day, today held out
    assert today.tags["sensorwatch.logical_date"] == deployment.day
    metrics = client.get_run(today.run_id).data.metrics
    assert metrics["gate.challenger.labelled"] == ASSETS  # today's labelled faults
