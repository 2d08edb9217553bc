"""Where compiled forward passes are kept between runs, so a restart loads them instead of
compiling again (seconds of start-up on a CPU).

TensorFlow reads its XLA flags once, when it is imported, so this module imports no Keras and
``keep_compiled`` must run before anything that does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


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
