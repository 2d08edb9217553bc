"""Keras, imported once and quietly: the one way model code gets it.

TensorFlow's native libraries write to file descriptor 2 before any Python logging setting can
reach them (CUDA probing on machines without a GPU, CPU feature notes), which would bury the
user's output; Python errors raised by the import still surface as exceptions. Modules that
build, train or run a model import ``keras`` from here, so everything else stays light.
TensorFlow's own log level is a process variable of the library, set with the others in
``sensorwatch.models.library_env``.
"""

from __future__ import annotations

import os
import sys

from sensorwatch.models.library_env import quiet_native_logs


def _import_keras_quietly():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    quiet_native_logs()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        try:
            import keras
        except ModuleNotFoundError as exc:  # the scoring install: ONNX Runtime, no Keras
            raise ModuleNotFoundError(
                f"{exc.name} is not installed: training, evaluation, detection and "
                "SENSORWATCH_RUNTIME=keras need the train extra (pip install 'sensorwatch[train]')",
                name=exc.name,
            ) from None

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras


keras = _import_keras_quietly()
