"""End-to-end throughput against its two limits: what the Kafka client can consume, and what the
model can score.

On the embedded broker, N readings (default 200 assets × 1,000, 5 channels) on a 4-partition
topic; in one run:

  a. raw group consumption of those records, decoding each (orjson) and committing each poll, no
     other work: the client's limit, for kafka-python (the default client) and confluent-kafka;
  b. the compiled forward pass alone on as many windows of the model's shape, in polls' worth;
  c. the service end to end (``Service.on_kafka`` with the settings' defaults, the archive on), in
     replica processes of its own, from the first poll a replica decided until the last one (each
     replica notes when, on the shared wall clock; the run ends once the group has committed every
     record): at stride 1 and stride 5, and with two replicas in one group, with each client.

Each replica process reports when it started, so the run also gives start-up to first commit
(Python, TensorFlow, the model and the group join; the model is built, not fetched from MLflow).

Prints one JSON object with the rates and the ratios c/a and c/b, and writes it to
``benchmarks/results/throughput.json``. Asserts no timing.

    python benchmarks/throughput.py [--assets 200] [--readings 1000] [--partitions 4] [--strides 1,5]
        [--clients kafka-python,confluent-kafka] [--replicas 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
from replicas import end_to_end
from untrained import detector_for

RESULTS = Path(__file__).resolve().parent / "results"


def _rate(total: int, first: int, began: float) -> float:
    """Records per second after the first poll's commit, the rule the service's runs are timed by."""
    return (total - first) / max(time.perf_counter() - began, 1e-9)


def raw_consumption(settings, total: int) -> float:
    """Readings per second a bare kafka-python group consumer reaches: poll, decode, commit."""
    from sensorwatch.pipeline.kafka import clients

    consumer = clients.consumer(
        settings.model_copy(update={"group_id": f"raw-{uuid.uuid4().hex[:8]}"}),
        settings.readings_topic,
    )
    seen, first, began = 0, 0, 0.0
    try:
        while seen < total:
            polled = consumer.poll(timeout_ms=500, max_records=settings.max_poll_records)
            for records in polled.values():
                for r in records:
                    orjson.loads(r.value)
                seen += len(records)
            if polled:
                consumer.commit()
                if not first:
                    first, began = seen, time.perf_counter()
        return _rate(total, first, began)
    finally:
        consumer.close()


def raw_confluent(settings, total: int) -> float:
    """The same for a bare confluent-kafka (librdkafka) group consumer."""
    from confluent_kafka import Consumer

    from sensorwatch.pipeline.kafka.confluent import config

    conf = config(settings.model_copy(update={"group_id": f"raw-{uuid.uuid4().hex[:8]}"}))
    conf.pop("logger")
    conf["enable.auto.offset.store"] = True  # commit() commits what was consumed
    consumer = Consumer(conf)
    consumer.subscribe([settings.readings_topic])
    seen, first, began = 0, 0, 0.0
    try:
        while seen < total:
            messages = consumer.consume(settings.max_poll_records, 0.5)
            for m in messages:
                if m.error() is None:
                    orjson.loads(m.value())
                    seen += 1
            if messages:
                consumer.commit(asynchronous=False)
                if not first:
                    first, began = seen, time.perf_counter()
        return _rate(total, first, began)
    finally:
        consumer.close()


def forward_only(detector, total: int, batch: int) -> float:
    """Windows per second of the compiled forward pass alone, in batches of one poll's windows."""
    spec = detector.spec
    x = (
        np.random.default_rng(0)
        .normal(size=(batch, spec.window, len(spec.channels)))
        .astype(np.float32)
    )
    detector.score(x)
    began, done = time.perf_counter(), 0
    while done < total:
        detector.score(x[: min(batch, total - done)])
        done += min(batch, total - done)
    return total / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--readings", type=int, default=1000, help="Readings per asset.")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--strides", default="1,5")
    parser.add_argument("--clients", default="kafka-python,confluent-kafka")
    parser.add_argument(
        "--replicas", default="1,2", help="Replica counts to run (at stride 1, with each client)."
    )
    parser.add_argument(
        "--out", default="throughput.json", help="Name of the result file in benchmarks/results/."
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="Folder for py-spy profiles of the replicas (collapsed stacks).",
    )
    parser.add_argument(
        "--runtime",
        default="onnx",
        choices=["keras", "onnx"],
        help="How the replicas score: the exported graph in ONNX Runtime (serve's default), or "
        "the Keras model.",
    )
    args = parser.parse_args()

    from sensorwatch.pipeline.dev.broker import EmbeddedBroker
    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.dev.simulator import Simulator
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.settings import Settings

    detector = detector_for(runtime=args.runtime)
    frame = Simulator(
        assets=args.assets, seed=1, start_ms=int(time.time() * 1000) - 2 * 86_400_000
    ).normal(args.readings)
    total = len(frame)
    topics = clients.service_topics(Settings())
    with (
        EmbeddedBroker(topics, partitions=args.partitions) as broker,
        tempfile.TemporaryDirectory() as tmp,
    ):
        common = {
            "bootstrap_servers": broker.bootstrap_servers,
            "archive_uri": str(Path(tmp) / "archive"),
            "reload_interval_s": 0,
            "runtime": args.runtime,
        }
        base = Settings(**common)
        clients.ensure_topics(base, clients.service_topics(base), partitions=args.partitions)
        produce_frame(base, frame, progress=False)
        result: dict[str, object] = {
            "benchmark": "throughput",
            "host": platform.node(),
            "cores": os.cpu_count(),
            "readings": total,
            "assets": args.assets,
            "channels": len(detector.spec.channels),
            "window": detector.spec.window,
            "partitions": args.partitions,
            "runtime": args.runtime,
        }
        clients_ = args.clients.split(",")
        raw = {"kafka-python": raw_consumption(base, total)}
        if "confluent-kafka" in clients_:
            raw["confluent-kafka"] = raw_confluent(base, total)
        result["raw_consumption_per_s"] = {c: round(r) for c, r in raw.items()}
        forward = forward_only(detector, total, base.max_poll_records)
        result["forward_windows_per_s"] = round(forward)
        runs = [
            (client, stride, 1)
            for client in clients_
            for stride in (int(s) for s in args.strides.split(","))
        ]
        runs += [
            (client, 1, n)
            for client in args.clients.split(",")
            for n in (int(r) for r in args.replicas.split(","))
            if n > 1
        ]
        for client, stride, replicas in runs:
            # A group and a topic of its own for each run: a run must not restore the state of the
            # one before (the changelog goes by group and topic; it would skip every reading).
            run_id = uuid.uuid4().hex[:8]
            fields = {
                **common,
                "group_id": f"bench-{run_id}",
                "readings_topic": f"readings-{run_id}",
                "stride": stride,
                "kafka_client": client,
            }
            clients.ensure_topics(
                Settings(**fields), [fields["readings_topic"]], partitions=args.partitions
            )
            produce_frame(Settings(**fields), frame, progress=False)
            name = f"service_{client}_stride_{stride}" + (
                f"_replicas_{replicas}" if replicas > 1 else ""
            )
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
            run = end_to_end(
                Settings(**fields), fields, total, replicas, args.profile and args.profile / name
            )
            run["vs_raw_kafka_python"] = round(run["readings_per_s"] / raw["kafka-python"], 2)
            if client != "kafka-python":
                run["vs_raw_same_client"] = round(run["readings_per_s"] / raw[client], 2)
            run["windows_vs_forward"] = round(
                run["windows"] / (total / run["readings_per_s"]) / forward, 2
            )
            # The scoring stage alone: windows per second of forward pass inside the service.
            if run["scoring_s"]:  # (a service that does not time its forward pass apart reports 0)
                run["scoring_stage_windows_per_s"] = round(
                    run["windows"] / run["scoring_s"] * replicas
                )
                run["scoring_stage_vs_forward"] = round(
                    run["scoring_stage_windows_per_s"] / forward, 2
                )
            result[name] = run
            print(name, run, file=sys.stderr, flush=True)
        for client in args.clients.split(","):
            one = result.get(f"service_{client}_stride_1")
            for n in (int(r) for r in args.replicas.split(",")):
                several = result.get(f"service_{client}_stride_1_replicas_{n}")
                if one and several:
                    suffix = "" if client == "kafka-python" else f"_{client}"
                    result[f"replicas_{n}_scaling{suffix}"] = round(
                        several["readings_per_s"] / one["readings_per_s"], 2
                    )
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
