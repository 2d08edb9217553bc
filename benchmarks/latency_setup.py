"""What ``latency.py`` runs on: its options, the rate (half the measured maximum), a detector of
the ``plant`` preset's shape trained for the purpose, and the readings to produce with the faults
they carry."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE = "service_kafka-python_stride_1"  # throughput.py's run of the default client and stride
DEFAULT_RATE = 5000.0  # readings per second when neither --rate nor a throughput result says
TAIL = 5  # normal readings per asset after the faulty stretch: no alarm waits for the stream's end
LONGEST_FAULT = 300  # readings: the simulator's longest fault (simulator._place)


def parse_args(doc: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """The options of ``latency.py`` (``doc``, its docstring, says what they mean), and the parser."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="Readings per second to produce (default: half the measured service maximum, else 5000).",
    )
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="How long readings are produced."
    )
    parser.add_argument(
        "--faulty", type=float, default=0.5, help="Share of the assets with injected faults."
    )
    parser.add_argument(
        "--faults-per-asset", type=int, default=2, help="At most (fewer when the stream is short)."
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--train-assets", type=int, default=8)
    parser.add_argument(
        "--train-readings", type=int, default=3000, help="Normal readings per training asset."
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-stride", type=int, default=5)
    parser.add_argument(
        "--commit-interval",
        type=float,
        default=None,
        help="The service's commit_interval_s (default: the settings' default).",
    )
    parser.add_argument(
        "--no-archive", action="store_true", help="Run the service without its archive."
    )
    parser.add_argument(
        "--reader-fetch-wait-ms",
        type=int,
        default=10,
        help="fetch_max_wait_ms of the anomaly reader (small, so it adds little itself).",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--runtime",
        default="onnx",
        choices=["keras", "onnx"],
        help="How the service scores: the exported graph in ONNX Runtime, or the Keras model.",
    )
    parser.add_argument(
        "--poll-timeout-ms", type=int, default=None, help="The service's poll_timeout_ms."
    )
    parser.add_argument(
        "--grace-intervals",
        type=float,
        default=None,
        help="The service's grace_intervals (default: the model version's; 0 suits a source that "
        "sends each asset's readings in time order).",
    )
    parser.add_argument(
        "--out", default="latency.json", help="Name of the result file in benchmarks/results/."
    )
    return parser.parse_args(), parser


def default_rate() -> tuple[float, str]:
    """Half the service's measured end-to-end maximum, or ``DEFAULT_RATE``; and where it came from."""
    path = RESULTS / "throughput.json"
    try:
        measured = json.loads(path.read_text())[SERVICE]["readings_per_s"]
        return float(measured) / 2, f"half of {path.name} {SERVICE}.readings_per_s ({measured})"
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_RATE, "default"


def faults_that_fit(n: int, wanted: int) -> int:
    """How many faults (at most ``wanted``) surely fit in ``n`` readings per asset."""
    from sensorwatch.pipeline.dev.simulator import FAULT_GAP, FIRST_FAULT

    k = wanted
    while k > 0 and FIRST_FAULT + k * LONGEST_FAULT + (k - 1) * FAULT_GAP > n:
        k -= 1
    return k


def train_detector(args, sim):
    """A detector of the ``plant`` preset's shape trained on the first pumps' normal history."""
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.presets import preset
    from sensorwatch.models.training import fit_detector
    from sensorwatch.pipeline.dev.simulator import CHANNELS, series_by_asset
    from sensorwatch.pipeline.settings import Settings

    history = sim.normal(args.train_readings)  # every pump's, so the streams continue it
    chosen = set(sim.asset_ids[: args.train_assets])
    series = series_by_asset(history[history["asset_id"].isin(chosen)])
    recipe = preset("plant").updated(epochs=args.epochs, train_stride=args.train_stride)
    began = time.perf_counter()
    trained = fit_detector(
        series, list(CHANNELS), recipe, Settings(seed=args.seed).train_options(progress=False)
    )
    info = {
        "assets": len(series),
        "readings_per_asset": args.train_readings,
        "epochs": len(trained.history["loss"]),
        "windows": trained.windows,
        "seconds": round(time.perf_counter() - began, 1),
        "threshold": round(float(trained.spec.threshold.get("value", float("nan"))), 3),
    }
    if args.runtime == "onnx":  # the graph registration exports, in ONNX Runtime (one thread)
        from sensorwatch.models.compiled import export_onnx
        from sensorwatch.models.detector import OnnxScorer

        graph = export_onnx(trained.model, *trained.spec.arrays(), reduce=trained.spec.score)
        return Detector(OnnxScorer(graph), trained.spec, version="1"), info
    return Detector(trained.model, trained.spec, version="1"), info


def stream_frame(args, normal_sim, faulty_sim, per_asset: int):
    """The readings to produce (event-time order) and the faults they carry: the faulty pumps'
    readings from ``faulty_sim``, the others' from its twin, then a short normal tail."""
    import pandas as pd

    faults_per_asset = faults_that_fit(per_asset - TAIL, args.faults_per_asset)
    if faults_per_asset == 0 and args.faulty > 0:
        raise SystemExit(
            f"{per_asset} readings per asset are too few for a fault (it takes {TAIL + 100 + LONGEST_FAULT}): "
            "raise --seconds or --rate, or lower --assets"
        )
    main = per_asset - TAIL
    normal = normal_sim.normal(main)
    faulty_assets: set[str] = set()
    faults = []
    if faults_per_asset:
        with_faults, all_faults = faulty_sim.with_faults(main, faults_per_asset=faults_per_asset)
        count = round(args.faulty * len(normal_sim.asset_ids))
        picked = np.random.default_rng(args.seed).choice(
            len(normal_sim.asset_ids), count, replace=False
        )
        faulty_assets = {normal_sim.asset_ids[i] for i in picked}
        faults = [f for f in all_faults if f.asset_id in faulty_assets]
        rows = normal["asset_id"].isin(faulty_assets).to_numpy()
        channels = [c for c in normal.columns if c not in ("asset_id", "ts_ms")]
        normal.loc[rows, channels] = with_faults.loc[
            rows, channels
        ].to_numpy()  # same rows, same order
    frame = pd.concat([normal, normal_sim.normal(TAIL)], ignore_index=True)
    return frame, faults, faulty_assets, faults_per_asset
