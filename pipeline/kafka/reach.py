"""Is the broker there? A plain TCP look at the bootstrap servers, and waiting one out.

Kafka clients retry an unreachable broker on their own, for long and loudly; the service asks
first, says what it sees in one line of its own, and gives up after ``broker_timeout_s``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from sensorwatch.pipeline.errors import BrokerError

log = logging.getLogger("sensorwatch.pipeline")


def unreachable(servers: str, timeout_s: float = 2.0) -> str | None:
    """Why none of ``servers`` (``host:port,…``) accepts a connection, or None when one does.

    >>> unreachable("127.0.0.1:9", 0.5)
    '127.0.0.1:9: connection refused'
    """
    reasons = []
    for server in [s.strip() for s in servers.split(",") if s.strip()]:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection(
                (host.strip("[]") or "localhost", int(port)), timeout=timeout_s
            ):
                return None
        except ValueError:
            reasons.append(f"{server}: not host:port")
        except OSError as exc:
            reasons.append(f"{server}: {_why(exc)}")
    return "; ".join(reasons) or "no bootstrap servers"


def _why(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return exc.strerror or type(exc).__name__


def wait_for_broker(
    servers: str,
    timeout_s: float,
    sleep: Callable[[float], object] = time.sleep,
    what: str = "broker",
) -> None:
    """Return once a bootstrap server accepts connections; retry with backoff for up to ``timeout_s``,
    then raise ``BrokerError``. One warning line when it starts waiting, one when it is back."""
    began, delay, said = time.monotonic(), 0.5, False
    while (why := unreachable(servers)) is not None:
        waited = time.monotonic() - began
        if waited + delay > timeout_s:
            raise BrokerError(
                f"no Kafka {what} reachable at {servers} after {waited:.0f} s ({why})"
            )
        if not said:
            log.warning(
                "Kafka %s unreachable (%s): retrying for up to %.0f s", what, why, timeout_s
            )
            said = True
        sleep(delay)
        delay = min(delay * 2, 10.0)
    if said:
        log.warning("Kafka %s reachable again after %.1f s", what, time.monotonic() - began)
