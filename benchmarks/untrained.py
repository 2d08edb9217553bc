"""An untrained detector of a preset's shape, for the benchmarks that time scoring: the speed does
not depend on the weights. ``runtime`` "onnx" exports its scoring graph in a process of its own
(once per preset and channel count), so the caller imports no TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

EXPORT = """
import sys
from sensorwatch.models.autoencoder import build_autoencoder
from sensorwatch.models.compiled import export_onnx
from sensorwatch.models.presets import preset
import numpy as np
recipe, n = preset(sys.argv[1]), int(sys.argv[2])
model = build_autoencoder(recipe.window, n, recipe.units, recipe.latent)
ones = np.ones(n, np.float32)
open(sys.argv[3], "wb").write(export_onnx(model, ones * 0, ones, ones, recipe.score))
"""


def _graph(window_preset: str, channels: int) -> bytes:
    """The scoring graph of an untrained model of the preset's shape, exported in a process of its
    own (once per preset): the caller imports no TensorFlow."""
    path = Path(tempfile.gettempdir()) / f"sensorwatch-bench-{window_preset}-{channels}.onnx"
    if not path.exists():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [sys.executable, "-c", EXPORT, window_preset, str(channels), str(path)]
        subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
    return path.read_bytes()


def detector_for(window_preset: str = "plant", runtime: str = "keras"):
    """An untrained model of the preset's shape (the speed does not depend on the weights), with a
    threshold no score reaches: every window is scored and decided, none alarms. ``runtime`` "onnx": its
    exported scoring graph in ONNX Runtime (one thread), in a process that imports no TensorFlow."""
    from sensorwatch.models.detector import Detector, OnnxScorer
    from sensorwatch.models.presets import preset
    from sensorwatch.models.spec import DetectorSpec
    from sensorwatch.pipeline.dev.simulator import CHANNELS

    recipe = preset(window_preset)
    n = len(CHANNELS)
    spec = DetectorSpec(
        list(CHANNELS),
        [0.0] * n,
        [1.0] * n,
        [1.0] * n,
        # The default recipe's threshold, following the typical score as it does, never reached.
        {"method": "reference", "value": 1e30, "follow": 2000, "base": 1.0, "spread": 1.0},
        recipe=recipe,
        interval_ms=1000,
    )
    if runtime == "onnx":
        return Detector(OnnxScorer(_graph(window_preset, n)), spec, version="1").warm_up()
    from sensorwatch.models.autoencoder import build_autoencoder

    return Detector(
        build_autoencoder(recipe.window, n, recipe.units, recipe.latent), spec, version="1"
    ).warm_up()
