"""Logging in to Kafka over TLS and SASL, and saying clearly why a login failed.

kafka-python treats a refused login or a failed TLS handshake like a broker that is not there
yet: it tries again until its bootstrap times out, then says only "Unable to bootstrap". Before
the service's clients start, ``check_login`` connects once and, if that fails, names the cause in
one line: the broker refused the user, the certificate did not verify, the broker does not speak
TLS. The password is never part of it.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time

from kafka import KafkaAdminClient
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)
from kafka.net.sasl import register_sasl_mechanism
from kafka.net.sasl.scram import SaslMechanismScram

from sensorwatch.pipeline.errors import BrokerError
from sensorwatch.pipeline.settings import Settings

LOGIN_FAILURES = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError, ssl.SSLError)


class _Scram(SaslMechanismScram):
    """SCRAM as kafka-python does it, but a server's ``e=`` answer (RFC 5802: the login was
    refused, e.g. ``unknown-user`` or ``invalid-proof``) is an authentication failure, not a
    ``KeyError`` on the missing server signature."""

    def receive(self, auth_bytes: bytes) -> bool:
        if auth_bytes.startswith(b"e="):
            raise SaslAuthenticationFailedError(
                f"the broker said {auth_bytes[2:].decode(errors='replace')!r}"
            )
        return super().receive(auth_bytes)


for _mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
    register_sasl_mechanism(_mechanism, _Scram, overwrite=True)


class _Watch(logging.Filter):
    """Keeps the first login failure kafka-python logs while it retries, and lets nothing through."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if self.failure is None and (isinstance(arg, LOGIN_FAILURES) or _tls_failure(arg)):
                self.failure = arg
        return False


def _tls_failure(error: object) -> bool:
    """kafka-python reports a failed TLS handshake as a connection error that says so."""
    return isinstance(error, KafkaConnectionError) and "Handshake failed" in str(error)


def check_login(settings: Settings, timeout_s: float = 10.0) -> bool:
    """Connect once with the security settings: True once in; a refused login or failed TLS
    handshake raises ``BrokerError`` with its cause. A broker that simply does not answer (False)
    is left to the caller's own waiting (``reach.wait_for_broker``)."""
    from sensorwatch.pipeline.kafka.clients import servers

    watch = _Watch()
    loggers = [
        logging.getLogger(name)
        for name in ("kafka.net.manager", "kafka.net.connection", "kafka.net.transport")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # the retries' reasons reach the watch, and stop there
        logger.setLevel(logging.WARNING)
        logger.addFilter(watch)
    outcome: dict[str, bool] = {}

    def attempt() -> None:
        try:
            KafkaAdminClient(
                bootstrap_servers=servers(settings),
                bootstrap_timeout_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
                **settings.kafka_security(),
            ).close()
            outcome["in"] = True
        except KafkaError:
            outcome["in"] = False

    # A TLS handshake with a broker that does not speak TLS can wait forever inside the client:
    # the attempt runs on a thread of its own, given up after the timeout.
    try:
        attempt_thread = threading.Thread(target=attempt, name="kafka-login-check", daemon=True)
        attempt_thread.start()
        deadline = time.monotonic() + timeout_s + 5
        while attempt_thread.is_alive() and watch.failure is None and time.monotonic() < deadline:
            attempt_thread.join(
                0.05
            )  # a refusal is told at once, not after the client's own timeout
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeFilter(watch)
            logger.setLevel(level)
    if watch.failure is not None:
        raise BrokerError(login_problem(settings, watch.failure))
    if "in" not in outcome and settings.security_protocol.endswith("SSL"):
        raise BrokerError(
            f"TLS with Kafka at {settings.bootstrap_servers} got no answer within {timeout_s:.0f} s: "
            "is the broker listening with TLS there? check SENSORWATCH_SECURITY_PROTOCOL"
        )
    return outcome.get("in", False)


def login_problem(settings: Settings, failure: BaseException) -> str:
    """One line on why the login failed, naming the settings to look at (never their secrets)."""
    where = f"Kafka at {settings.bootstrap_servers}"
    text = str(failure)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        why = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return (
            f"TLS with {where} failed: the broker's certificate did not verify ({why}); "
            "check SENSORWATCH_SSL_CAFILE and SENSORWATCH_SSL_CHECK_HOSTNAME"
        )
    if isinstance(failure, ssl.SSLError) or _tls_failure(failure):
        reason = getattr(failure, "reason", None) or text.split("Handshake failed:", 1)[-1].strip()
        return (
            f"TLS with {where} failed ({reason}): is the broker listening with TLS there? "
            "check SENSORWATCH_SECURITY_PROTOCOL and the SENSORWATCH_SSL_* settings"
        )
    if isinstance(failure, UnsupportedSaslMechanismError):
        return f"{where} does not offer {settings.sasl_mechanism}: {failure}; check SENSORWATCH_SASL_MECHANISM"
    detail = re.sub(r"^(\[Error \d+\] )?\w+Error: ", "", text).strip()
    return (
        f"{where} refused the {settings.sasl_mechanism} login of user {settings.sasl_username!r} ({detail}); "
        "check SENSORWATCH_SASL_USERNAME and SENSORWATCH_SASL_PASSWORD"
    )
