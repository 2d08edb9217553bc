"""The deep-learning libraries' own process variables, set in this one module.

TensorFlow, XLA, JAX and OpenMP read these from the process environment, most of them once, when
they load; they are not sensorwatch settings (those are ``SENSORWATCH_*``, read only by
``sensorwatch.pipeline.settings``), and sensorwatch never reads them back for itself. Each
function here must run before the library it speaks to is imported, so this module imports none.

- ``quiet_native_logs``: TensorFlow's C++ log level (``TF_CPP_MIN_LOG_LEVEL``), before Keras;
- ``keep_compiled``: where compiled forward passes are kept between runs (``TF_XLA_FLAGS``,
  ``JAX_COMPILATION_CACHE_DIR``), so a restart loads them instead of compiling again (seconds of
  start-up on a CPU);
- ``one_thread``: one compute thread per process (``TF_NUM_*_THREADS``, ``OMP_NUM_THREADS``), for
  worker processes that share the cores side by side; called in the worker, never in its parent;
- ``mlflow_leaves_logging``: MLflow configures no logging when imported
  (``MLFLOW_CONFIGURE_LOGGING``), so the CLI sets the levels once without importing it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def quiet_native_logs() -> None:
    """TensorFlow's native libraries log to file descriptor 2 only from ERROR up (a level the
    user set wins)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keep_compiled(folder: Path) -> bool:
    """Keep compiled programs in ``folder`` for whichever Keras backend loads next. Entries are keyed
    by the computation itself, so a new model version adds its own and never reuses another's. A
    cache the user configured wins. False when a backend was already imported (too late to ask)."""
    folder = Path(folder)
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" not in flags:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    if "jax" in sys.modules:  # jax reads its environment once too, but takes a late setting
        import jax

        if not jax.config.jax_compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", str(folder))
    return "tensorflow" not in sys.modules


def mlflow_leaves_logging() -> None:
    """MLflow, imported after this, leaves its loggers to the process's logging setup (levels set
    by the CLI, records to its handlers) instead of giving them a handler and a level of its own;
    a setting the user made wins. Where MLflow was imported already, it has configured them: the
    levels the CLI sets afterwards hold either way."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")


def one_thread() -> None:
    """This process computes on one thread (TensorFlow's pools and OpenMP's), so that several
    such processes share the cores instead of fighting over them. Only libraries loaded after the
    call obey: numpy's BLAS, when numpy is already imported, keeps the pool it started with."""
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))


def start_worker(compiled: Path | None, single_thread: bool) -> None:
    """A worker process's initializer (it runs in the worker, before any task imports Keras):
    ``one_thread`` when it shares the cores with others, ``keep_compiled`` when given a folder."""
    if single_thread:
        one_thread()
    if compiled is not None:
        keep_compiled(compiled)
