"""The peer to beat: the streaming LSTM-autoencoder scorer as tutorials write it, on the same data
the throughput benchmark uses.

On the embedded broker, N readings (default 200 assets × 1,000, 5 channels) on a 4-partition
topic, produced as ``throughput.py`` produces them. Then a kafka-python consumer in a group of its
own (auto-commit on, ``for message in consumer``) reads them: ``json.loads`` each record, appends
its channel values to the asset's ``collections.deque(maxlen=window)``, and whenever that deque
is full scales the window (the detector's mean and std, as a fitted scaler would), calls
``model.predict(window[None], verbose=0)`` on that one window, and compares the mean squared
reconstruction error with the threshold. The model is the throughput benchmark's (same shape,
same preset); its first ``predict`` is made before the clock starts.

It is slow, so it runs for ``--seconds`` or ``--limit`` records, whichever comes first. The rate
that counts is the steady one, from the first full window on (before that, assets are only
filling their deques and nothing is scored); the overall rate is reported beside it. When
``benchmarks/results/throughput.json`` exists, ``service_vs_naive`` is its
``service_kafka-python_stride_1.readings_per_s`` over the steady naive rate (compare runs of one host only).

Prints one JSON object and writes it to ``benchmarks/results/naive.json``. Asserts no timing.

    python benchmarks/naive.py [--assets 200] [--readings 1000] [--partitions 4] [--seconds 30] [--limit N]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def naive_consume(
    bootstrap: str, topic: str, detector, seconds: float, limit: int
) -> dict[str, float]:
    """The tutorial loop: one record, one json.loads, one deque append, one predict per full window."""
    from kafka import KafkaConsumer

    model, spec = detector.model, detector.spec
    channels, window = list(spec.channels), spec.window
    mean, std, _ = spec.arrays()
    threshold = detector.new_threshold().level()
    model.predict(
        np.zeros((1, window, len(channels)), np.float32), verbose=0
    )  # builds predict's function

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"naive-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        # The loop ends when the topic has had nothing for this long. Long, because with kafka-python's
        # defaults joining a new group on the embedded broker takes ~20 s (not counted: the clock
        # starts at the first record).
        consumer_timeout_ms=60_000,
    )
    buffers: dict[str, collections.deque] = collections.defaultdict(
        lambda: collections.deque(maxlen=window)
    )
    readings = windows = anomalies = 0
    predict_s = 0.0
    began = first_window = None
    at_first = 0
    now = time.perf_counter()
    try:
        for message in consumer:
            if began is None:
                began = time.perf_counter()
            reading = json.loads(message.value)
            buf = buffers[reading["asset_id"]]
            buf.append([reading["values"][c] for c in channels])
            readings += 1
            if len(buf) == window:
                if first_window is None:
                    first_window, at_first = time.perf_counter(), readings - 1
                x = (np.array(buf, np.float32) - mean) / std
                t = time.perf_counter()
                recon = model.predict(x[None], verbose=0)
                predict_s += time.perf_counter() - t
                mse = float(np.mean((recon[0] - x) ** 2))
                anomalies += mse > threshold
                windows += 1
            now = time.perf_counter()
            if readings >= limit or now - began >= seconds:
                break
    finally:
        consumer.close()  # commits the offsets reached, as auto-commit does on close
    if began is None:
        raise RuntimeError("the naive consumer read nothing")
    steady_s = now - first_window if first_window is not None else 0.0
    return {
        "readings": readings,
        "windows": windows,
        "anomalies": anomalies,
        "seconds": round(now - began, 2),
        "fill_readings": at_first if first_window is not None else readings,
        "readings_per_s": round((readings - at_first) / steady_s, 1) if steady_s > 0 else None,
        "windows_per_s": round(windows / steady_s, 1) if steady_s > 0 else None,
        "overall_readings_per_s": round(readings / max(now - began, 1e-9), 1),
        "predict_ms": round(1000 * predict_s / windows, 2) if windows else None,
        "predict_share": round(predict_s / steady_s, 2) if steady_s > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--readings", type=int, default=1000, help="Readings per asset.")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="Stop consuming after this long."
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="Stop after this many records (0: all produced)."
    )
    args = parser.parse_args()

    from untrained import detector_for

    from sensorwatch.pipeline.dev.broker import EmbeddedBroker
    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.dev.simulator import Simulator
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.settings import Settings

    detector = detector_for()
    frame = Simulator(
        assets=args.assets, seed=1, start_ms=int(time.time() * 1000) - 2 * 86_400_000
    ).normal(args.readings)
    total = len(frame)
    topics = clients.service_topics(Settings())
    with (
        EmbeddedBroker(topics, partitions=args.partitions) as broker,
        tempfile.TemporaryDirectory() as tmp,
    ):
        base = Settings(
            bootstrap_servers=broker.bootstrap_servers, archive_uri=str(Path(tmp) / "archive")
        )
        clients.ensure_topics(base, clients.service_topics(base), partitions=args.partitions)
        produce_frame(base, frame, progress=False)
        run = naive_consume(
            broker.bootstrap_servers,
            base.readings_topic,
            detector,
            args.seconds,
            min(args.limit or total, total),
        )
    result: dict[str, object] = {
        "benchmark": "naive",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "produced": total,
        "assets": args.assets,
        "channels": len(detector.spec.channels),
        "window": detector.spec.window,
        "partitions": args.partitions,
        "limit_s": args.seconds,
        **run,
    }
    throughput = RESULTS / "throughput.json"
    if throughput.exists() and run["readings_per_s"]:
        service = json.loads(throughput.read_text())
        stride_1 = service.get("service_kafka-python_stride_1", {}).get("readings_per_s")
        if stride_1:
            result["service_readings_per_s"] = stride_1
            result["service_vs_naive"] = round(stride_1 / run["readings_per_s"], 1)
            result["service_host"] = service.get("host")
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "naive.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
