"""Where the commands' log records go and how they read: standard error through a descriptor of
its own, plain text or JSON (``SENSORWATCH_LOG_FORMAT``, ``--log-format``), libraries' noise held
back to what an operator needs."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from sensorwatch.pipeline.cli.jsonlog import JsonFormatter


def _log_stream() -> TextIO:
    """Standard error through a descriptor of its own: importing Keras silences descriptor 2 for a
    moment (TensorFlow's C++ start-up chatter), and a thread that logs meanwhile (``serve`` joins
    its group while the model loads) must not be silenced with it."""
    try:
        if sys.stderr.fileno() == 2:
            return os.fdopen(
                os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
            )
    except (
        AttributeError,
        OSError,
        ValueError,
    ):  # not the process's own standard error (a test runner's)
        pass
    return sys.stderr


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The handler setup_logging installed (a host that configured logging itself, such as a test
# runner, keeps its own format), and the format the settings chose.
_ours: list[logging.Handler] = []
_log_format = "text"


def setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(_log_stream())
        root.addHandler(handler)
        root.setLevel(logging.INFO if verbose else logging.WARNING)
        _ours.append(handler)
    log_as(_log_format)
    # MLflow, when something imports it later (seconds of import: not here, not on serve's way to
    # ready), leaves these levels alone instead of setting its own.
    from sensorwatch.models.library_env import mlflow_leaves_logging

    mlflow_leaves_logging()

    for noisy in ("kafka", "mlflow", "alembic", "absl", "tensorflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if not verbose else logging.WARNING)
    # urllib3 warns at every retry of a request; what failed is said once, by us.
    logging.getLogger("urllib3").setLevel(logging.CRITICAL if not verbose else logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_chatter)


# What libraries say of themselves that is no news to an operator: a slow step of kafka-python's
# event loop, a metadata refresh cut short by closing, TensorFlow tracing a second model's forward
# pass after a hot swap. The service reports outages and swaps in its own words.
_CHATTER = (
    ("kafka", "ran for"),
    ("kafka", "Metadata refresh: failed Cancelled"),
    ("kafka", "Exchanging credentials in the clear"),
    ("tensorflow", "triggered tf.function retracing"),
)


def _not_chatter(record: logging.LogRecord) -> bool:
    return not any(
        record.name.startswith(name) and text in record.getMessage() for name, text in _CHATTER
    )


def log_as(log_format: str) -> None:
    global _log_format
    _log_format = log_format
    for handler in _ours:
        handler.setFormatter(
            JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
        )
    # A library's warnings.warn() is printed over several lines: a log shipper gets it as a record.
    logging.captureWarnings(log_format == "json" and bool(_ours))
