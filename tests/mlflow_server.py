"""A real ``mlflow server`` process for the tests: SQLite store and artifacts under one folder,
on a loopback port; it can be killed (an outage) and started again on the same port and store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from helpers import wait_for

from sensorwatch.pipeline.dev.tansu import free_port


class MlflowServer:
    """``mlflow server`` on a loopback port, its store and artifacts under ``root``; stop and start again."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.root}/mlflow.db",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--workers",
            "1",
        ]
        log = open(self.root / "server.log", "ab")
        # MLflow's job runner (eight more processes, each importing MLflow) serves features the
        # project does not use; without it a start costs one import of MLflow, not nine.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )

        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"{self.uri}/health", timeout=1).status == 200
            except OSError:
                return False

        assert wait_for(healthy, 90, every_s=0.5), (self.root / "server.log").read_text()[-3000:]
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_up(self) -> None:
        """Start it again if a test stopped it (and failed before starting it): the session's other
        tests need it."""
        if not self.running():
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # an outage, not a goodbye
            self.proc.wait(30)

    def api(self, path: str, body: dict | None = None, **query: str) -> dict:
        """One call of MLflow's REST API (``path`` after ``/api/2.0/mlflow/``): GET with ``query``,
        POST with ``body``."""
        url = f"{self.uri}/api/2.0/mlflow/{path}" + (
            f"?{urllib.parse.urlencode(query)}" if query else ""
        )
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def artifact(self, run_id: str, path: str) -> bytes:
        """An artifact's bytes, as the UI fetches it."""
        url = f"{self.uri}/get-artifact?" + urllib.parse.urlencode(
            {"path": path, "run_uuid": run_id}
        )
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()
