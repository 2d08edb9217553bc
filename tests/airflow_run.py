"""Real Airflow for the tests: its database migrated once per session (in the background, while a
model trains), and one process that parses ``dags/`` and runs ``dag.test()`` for each request.

Airflow configures logging and its database for the whole process, which should not leak into the
other tests: the DAGs run in a process of their own, which the tests talk to through pipes. It
parses the DAG folder first and reports what that took (before anything else is imported), then
runs one DAG per request, each with the ``SENSORWATCH_*`` settings of that request, each run's
output (file descriptors 1 and 2) in a log file of its own.

    python tests/airflow_run.py    # requests on stdin, one JSON object per line; replies on stdout
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

DAGS = Path(__file__).resolve().parent.parent / "dags"
HEAVY = ("keras", "tensorflow", "mlflow")


def airflow_env(home: Path) -> dict[str, str]:
    """The environment of every Airflow process of a session: its home, no examples, our DAGs."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    }


class AirflowHome:
    """An Airflow home whose database ``airflow db migrate`` sets up in the background; ``ready``
    waits for it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = airflow_env(home)
        self.log = home / "migrate.log"
        self.proc: subprocess.Popen | None = None

    def migrate(self) -> AirflowHome:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def ready(self, timeout_s: float = 300) -> AirflowHome:
        assert self.proc is not None, "migrate() first"
        assert self.proc.wait(timeout_s) == 0, self.log.read_text()[-3000:]
        return self

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class DagRunner:
    """The process that parses the DAG folder once and runs ``dag.test()`` for each request."""

    def __init__(self, airflow: AirflowHome) -> None:
        self.airflow = airflow
        self.logs = airflow.home / "runs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runs = 0
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.logs / "runner.log")],
            env=airflow.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._parsed: dict | None = None

    @property
    def parsed(self) -> dict:
        """What parsing the DAG folder gave, first thing in the process: ``errors``, ``dags``,
        ``seconds`` per file, and the ``heavy`` modules (Keras, TensorFlow, MLflow) it imported."""
        if self._parsed is None:
            self._parsed = self._reply(300)
        return self._parsed

    def test(self, dag_id: str, day: str, env: dict[str, str], timeout_s: float = 900) -> dict:
        """``dag.test()`` of ``dag_id`` for the logical date ``day`` (YYYY-MM-DD), with the
        ``SENSORWATCH_*`` variables of ``env`` (the others of the runner's environment removed):
        ``state``, ``tasks`` (task id → state), ``seconds``, and the run's output as ``log``."""
        assert self.parsed["dags"], self.parsed
        self.airflow.ready()
        self.runs += 1
        log = self.logs / f"{self.runs:02d}-{dag_id}-{day}.log"
        settings = {k: v for k, v in env.items() if k.startswith("SENSORWATCH_")}
        request = {"dag_id": dag_id, "day": day, "env": settings, "log": str(log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        outcome = self._reply(timeout_s)
        outcome["log"] = log.read_text() if log.exists() else ""
        return outcome

    def _reply(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
                break  # the runner exited
        runner = self.logs / "runner.log"
        raise AssertionError(
            f"no answer from the Airflow runner (exit code {self.proc.poll()}):\n"
            + (runner.read_text()[-3000:] if runner.exists() else "")
        )

    def close(self) -> None:
        """Kill the runner between requests: its runs are over and their logs written."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc.stdin.close()
        self.proc.stdout.close()


def _redirect(path: str) -> None:
    """File descriptors 1 and 2 (and whatever writes to them, Airflow's logging included) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _serve(runner_log: str) -> None:
    from datetime import UTC, datetime

    replies = os.fdopen(
        os.dup(1), "w", buffering=1
    )  # the pipe to the tests, before it is redirected
    _redirect(runner_log)
    began = time.monotonic()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    parsed = {
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "dags": sorted(bag.dags),
        "seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
        "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
        "total_s": round(time.monotonic() - began, 1),
    }
    replies.write(json.dumps(parsed) + "\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENSORWATCH_")}
    for line in sys.stdin:
        request = json.loads(line)
        os.environ.clear()
        os.environ.update({**base, **request["env"]})
        _redirect(request["log"])
        began = time.monotonic()
        try:
            day = datetime.fromisoformat(request["day"]).replace(tzinfo=UTC)
            run = bag.dags[request["dag_id"]].test(logical_date=day)
            outcome = {
                "state": str(run.state),
                "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
            }
        except Exception as exc:  # the tests show the log; the runner takes the next request
            import traceback

            traceback.print_exc()
            outcome = {"state": f"error: {exc!r}", "tasks": {}}
        outcome["seconds"] = round(time.monotonic() - began, 1)
        _redirect(runner_log)
        replies.write(json.dumps(outcome) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1])
