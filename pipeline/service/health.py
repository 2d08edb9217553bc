"""What the running service tells an operator, on one port: ``/healthz`` (is the process alive),
``/readyz`` (can it do its work now) and ``/metrics`` (Prometheus).

Liveness is a heartbeat of the poll loop: a loop stuck for longer than its own limits allow
(``max_poll_interval_ms`` plus the broker wait of ``broker_timeout_s``) is dead, and a restart
helps. Loading the model before the first poll counts as alive. Readiness is what a replica
needs to score: partitions of the readings topic, a model, a broker that answers (looked at
afresh, at most once a second, so it flips when the broker goes and comes back), and the
champion the alias names (a version it cannot load is said, never served in silence).
Both answer JSON with the reasons, 200 or 503.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from sensorwatch.pipeline.kafka import reach
from sensorwatch.pipeline.service.metrics import ServiceMetrics
from sensorwatch.pipeline.settings import Settings

BROKER_LOOK_S = 1.0  # the least time between two looks at the broker for /readyz


class Health:
    """The service's liveness and readiness, updated by the loop and read by the endpoints."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        broker_unreachable: Callable[[str], str | None] = reach.unreachable,
    ) -> None:
        self.servers = settings.bootstrap_servers
        self.stuck_after_s = settings.max_poll_interval_ms / 1000 + settings.broker_timeout_s + 30
        self.clock, self._unreachable = clock, broker_unreachable
        self.model_version: str | None = None
        self.partitions: Callable[[], Iterable[object]] = lambda: ()
        # Why the champion the alias names is not served (``Reloader.unusable``), None when it is.
        self.champion_unusable: Callable[[], str | None] = lambda: None
        self._beat: float | None = None  # None until the loop runs
        self._broker: tuple[float, str | None] = (float("-inf"), None)
        self._lock = threading.Lock()

    def beat(self) -> None:
        """The loop went round once."""
        self._beat = self.clock()

    def stopped(self) -> None:
        """The loop ended: not alive any more (the process is on its way out)."""
        self._beat = float("-inf")

    def live(self) -> tuple[bool, dict[str, object]]:
        if self._beat is None:
            return True, {"status": "starting"}
        since = self.clock() - self._beat
        if since > self.stuck_after_s:
            return False, {"status": "stuck", "seconds_since_last_poll": round(min(since, 1e9), 1)}
        return True, {"status": "ok", "seconds_since_last_poll": round(since, 1)}

    def ready(self) -> tuple[bool, dict[str, object]]:
        reasons = []
        if self.model_version is None:
            reasons.append("no model loaded yet")
        partitions = sorted(p for _, p in self.partitions())  # type: ignore[misc]
        if not partitions:
            reasons.append("no partitions assigned")
        broker = self.broker_unreachable()
        if broker is not None:
            reasons.append(f"broker unreachable: {broker}")
        unusable = self.champion_unusable()
        if unusable is not None:
            reasons.append(unusable)
        return not reasons, {
            "status": "ready" if not reasons else "not ready",
            "reasons": reasons,
            "model_version": self.model_version,
            "partitions": partitions,
        }

    def broker_unreachable(self) -> str | None:
        """Why the broker does not answer (None when it does), looked at most once a second."""
        with self._lock:
            looked, why = self._broker
            if self.clock() - looked >= BROKER_LOOK_S:
                why = (
                    self._unreachable(self.servers, 1.0) if self.servers else "no bootstrap servers"
                )
                self._broker = (self.clock(), why)
            return why


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(
        self, format: str, *args: object
    ) -> None:  # a scrape every few seconds is not news
        pass


class Endpoints:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``port`` (all interfaces), on a daemon thread."""

    def __init__(
        self, port: int, metrics: ServiceMetrics, health: Health, host: str = "0.0.0.0"
    ) -> None:
        self.health = health
        self._metrics = make_wsgi_app(metrics.registry)
        try:
            self._server = make_server(
                host, port, self._app, server_class=_Server, handler_class=_Quiet
            )
        except OSError as exc:
            from sensorwatch.pipeline.errors import UserError

            raise UserError(
                f"metrics_port {port}: cannot listen there ({exc.strerror or exc})"
            ) from None
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sensorwatch-http", daemon=True
        )
        self._thread.start()

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            ok, body = self.health.live() if path == "/healthz" else self.health.ready()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps(body).encode()]
        if path in ("/metrics", "/"):
            return self._metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /healthz, /readyz or /metrics\n"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
