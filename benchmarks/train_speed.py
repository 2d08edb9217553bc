"""Training speed of the LSTM autoencoder: windows per second for one window, channel count, batch
and Keras backend, with and without mixed precision, and with the fused cuDNN kernel on and off.

Synthetic windows (the speed does not depend on the values); the first epoch compiles and is not
timed. On a CPU with TensorFlow, the step is also timed compiled with XLA, as sensorwatch trains
long runs there. Prints one JSON object and writes it to ``benchmarks/results/train_speed-<backend>-<device>.json``.
Runs on whatever Keras finds: a GPU when there is one (``KERAS_BACKEND=jax`` or ``torch`` where
TensorFlow is not installed), the CPU otherwise.

    KERAS_BACKEND=torch python benchmarks/train_speed.py [--window 30] [--channels 5] [--units 32]
        [--batch 256] [--windows 65536] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def cudnn_eligible(model) -> dict[str, bool]:
    """Per LSTM layer, whether its settings allow the fused cuDNN kernel."""
    out = {}
    for layer in model.layers:
        if type(layer).__name__ == "LSTM":
            c = layer.get_config()
            out[layer.name] = (
                c["activation"] == "tanh"
                and c["recurrent_activation"] == "sigmoid"
                and c["recurrent_dropout"] == 0
                and not c["unroll"]
                and c["use_bias"]
            )
    return out


def device_name(keras) -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return getattr(d, "device_kind", d.platform)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        if gpus
        else "cpu"
    )


def speed(
    keras, args, mixed: bool, cudnn: bool | str, jit: bool | str = "auto"
) -> dict[str, object]:
    """One configuration's speed, or the error that stopped it (a backend may lack a kernel)."""
    try:
        return _speed(keras, args, mixed, cudnn, jit)
    except Exception as exc:  # reported in the result, not raised: the other runs still count
        keras.mixed_precision.set_global_policy("float32")
        return {"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}


def _speed(keras, args, mixed: bool, cudnn: bool | str, jit: bool | str) -> dict[str, object]:
    from sensorwatch.models.autoencoder import build_autoencoder

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(0)
    model = build_autoencoder(args.window, args.channels, args.units, use_cudnn=cudnn)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit)
    x = (
        np.random.default_rng(0)
        .normal(size=(args.windows, args.window, args.channels))
        .astype("float32")
    )
    model.fit(x, x, batch_size=args.batch, epochs=1, verbose=0)  # compiles
    began = time.perf_counter()
    model.fit(x, x, batch_size=args.batch, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - began
    keras.mixed_precision.set_global_policy("float32")
    return {
        "windows_per_s": round(args.windows * args.epochs / seconds),
        "seconds": round(seconds, 2),
        "cudnn_eligible": all(cudnn_eligible(model).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--windows", type=int, default=65_536, help="Training windows per epoch.")
    parser.add_argument(
        "--epochs", type=int, default=3, help="Timed epochs (after one that compiles)."
    )
    args = parser.parse_args()

    from sensorwatch.models.backend import keras

    device = device_name(keras)
    gpu = device != "cpu"
    runs = {"float32": speed(keras, args, False, "auto")}
    if gpu:
        runs["mixed_float16"] = speed(keras, args, True, "auto")
        runs["float32, cuDNN off"] = speed(keras, args, False, False)
    elif keras.backend.backend() == "tensorflow":
        # Keras leaves XLA off on a CPU; sensorwatch turns it on where it pays (TrainOptions.jit_compile).
        runs["float32, XLA"] = speed(keras, args, False, "auto", True)
    result = {
        "benchmark": "train_speed",
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "device": device,
        "host": platform.node(),
        **vars(args),
        "runs": runs,
    }
    rate = {name: run.get("windows_per_s") for name, run in runs.items()}
    if gpu and rate["float32"]:
        if rate["mixed_float16"]:
            result["mixed_precision_speedup"] = round(rate["mixed_float16"] / rate["float32"], 2)
        if rate["float32, cuDNN off"]:
            result["cudnn_speedup"] = round(rate["float32"] / rate["float32, cuDNN off"], 2)
    if rate.get("float32, XLA") and rate["float32"]:
        result["xla_speedup"] = round(rate["float32, XLA"] / rate["float32"], 2)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    name = f"train_speed-{result['backend']}-{'gpu' if gpu else 'cpu'}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
