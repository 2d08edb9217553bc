"""The compiled window score: per-channel errors, the level term, the error scale."""

import os
import subprocess
import sys

import numpy as np


def test_level_score_sees_a_shift_an_autoencoder_reconstructs() -> None:
    """A model that reconstructs anything perfectly scores a shifted window 0; "+level" does not."""
    from sensorwatch.models.backend import keras
    from sensorwatch.models.compiled import compile_forward

    window, channels = 10, 2
    perfect = keras.Sequential([keras.Input((window, channels)), keras.layers.Identity()])
    mean, std, scale = np.array([1.0, -1.0]), np.array([2.0, 0.5]), np.array([1.0, 4.0])
    steady = np.broadcast_to(mean, (window, channels))
    shifted = steady + np.array([2 * 2.0, 0.0])  # channel 0 two training std (2.0) up
    windows = np.stack([steady, shifted]).astype(np.float32)
    plain, _ = compile_forward(perfect, mean, std, scale, "max")(windows)
    level, errors = compile_forward(perfect, mean, std, scale, "max+level")(windows)
    np.testing.assert_allclose(plain, [0.0, 0.0], atol=1e-6)
    # Window length times the squared shift in training standard deviations, over the error scale.
    np.testing.assert_allclose(errors[1], [window * 2.0**2 / 1.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(level, [0.0, window * 4.0], rtol=1e-5)


def test_compiled_forward_passes_are_kept_on_disk(tmp_path) -> None:
    """``keep_compiled`` before Keras is imported: warming up a model writes its compiled programs
    to the folder (TensorFlow reads the setting only at import, so this runs in a fresh process)."""
    folder = tmp_path / "compiled"
    script = f"""
import sys
from pathlib import Path
from sensorwatch.models.library_env import keep_compiled
assert "keras" not in sys.modules
assert keep_compiled(Path({str(folder)!r}))
import numpy as np
from sensorwatch.models.backend import keras
from sensorwatch.models.compiled import compile_forward
model = keras.Sequential([keras.Input((6, 2)), keras.layers.LSTM(4, return_sequences=True), keras.layers.Dense(2)])
compile_forward(model, np.zeros(2), np.ones(2), np.ones(2)).warm_up()
"""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")
    }
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    assert folder.is_dir() and any(folder.iterdir()), "no compiled program was kept"
