"""Produce-to-anomaly latency: how long after a faulty reading is produced its alarm is on the
anomalies topic, with the service running at a steady rate.

On the embedded broker (4 partitions, the service's topics), a model of the ``plant`` preset's
shape trained for the purpose (a few epochs on a few simulated pumps' normal readings, in this
process, no MLflow); then the service (``Service.on_kafka`` with the settings' defaults, the
archive on) scores readings of many simulated pumps produced in real time at a steady, paced
rate: by default half the service's end-to-end maximum from ``benchmarks/results/throughput.json``
(``service_kafka-python_stride_1.readings_per_s``), else 5,000/s. A share of the pumps carries injected faults
(``Simulator.with_faults``), the others run normal (the twin simulator's readings). The producer
and the anomaly reader are processes of their own, so neither competes for the service's
interpreter lock; every reading's send time is kept, by asset and event time.

For each ``opened`` event: latency = when the reader received it − when the reading at its
``window_end`` (same asset) was produced. It is split in three: the wait for the grace period
(until the reading that releases the window was produced: the asset's reading ``grace`` later),
the service (from then to the event's ``detected_at``) and delivery (from then to its receipt).
The simulator samples every second of event time while the pumps' readings are produced faster
than that (``per_asset_interval_ms`` of wall time apart), so the grace period costs that much
wall time here, not the seconds it costs on a plant sampled in real time.

Prints one JSON object (rates, counts, latency percentiles in ms, faults injected against alarms
seen) and writes it to ``benchmarks/results/latency.json``. Asserts no timing.

With ``--grace-intervals 0`` the service releases each window as soon as its last reading is
in (right for a source that sends each asset's readings in time order, as the producer here
does): the grace wait is then nothing, and the alarms are the same on such a stream.

    python benchmarks/latency.py [--rate R] [--assets 200] [--seconds 60] [--faulty 0.5]
        [--partitions 4] [--train-assets 8] [--train-readings 3000] [--epochs 6]
        [--grace-intervals G] [--no-archive] [--commit-interval S]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from latency_clients import produce, read_events, wait_for
from latency_report import by_third, figures, timings
from latency_setup import default_rate, parse_args, stream_frame, train_detector
from procstat import CpuSampler

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    args, parser = parse_args(__doc__ or "")
    if not 0 <= args.faulty <= 1 or args.assets < 1 or args.seconds <= 0:
        parser.error("--faulty is a share in [0, 1]; --assets and --seconds must be positive")
    rate, rate_from = (args.rate, "--rate") if args.rate else default_rate()
    per_asset = int(rate * args.seconds / args.assets)

    from sensorwatch.pipeline.dev.broker import EmbeddedBroker
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.service.loop import Service
    from sensorwatch.pipeline.settings import Settings

    # Event time (a reading a second per pump) runs ahead of the wall clock here: start far enough
    # back that the whole run is in the past, so no reading is refused as from the future.
    day = 86_400_000
    span_ms = (args.train_readings + per_asset) * 1000
    start_ms = (int(time.time() * 1000) - span_ms) // day * day - day
    twins = [Simulator(assets=args.assets, seed=args.seed, start_ms=start_ms) for _ in range(2)]
    detector, training = train_detector(args, twins[0])
    twins[1].normal(args.train_readings)  # the twin at the same point
    frame, faults, faulty_assets, faults_per_asset = stream_frame(args, *twins, per_asset)
    spec = detector.spec

    ctx = mp.get_context("spawn")  # children without this process's TensorFlow and threads
    topics = clients.service_topics(Settings())
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker(topics, partitions=args.partitions, log_dir=Path(tmp) / "broker") as broker,
    ):
        servers = broker.bootstrap_servers
        overrides: dict[str, object] = {
            "bootstrap_servers": servers,
            "group_id": f"latency-{uuid.uuid4().hex[:8]}",
            "reload_interval_s": 0,
            "archive_uri": "" if args.no_archive else str(Path(tmp) / "archive"),
        }
        if args.poll_timeout_ms is not None:
            overrides["poll_timeout_ms"] = args.poll_timeout_ms
        if args.commit_interval is not None:
            overrides["commit_interval_s"] = args.commit_interval
        if args.grace_intervals is not None:
            overrides["grace_intervals"] = args.grace_intervals
        settings = Settings(**overrides)
        clients.ensure_topics(
            settings, clients.service_topics(settings), partitions=args.partitions
        )

        reader_ready, reader_stop, reader_out = ctx.Event(), ctx.Event(), ctx.Queue()
        reader = ctx.Process(
            target=read_events,
            name="anomaly-reader",
            daemon=True,
            args=(
                servers,
                settings.anomalies_topic,
                args.reader_fetch_wait_ms,
                reader_ready,
                reader_stop,
                reader_out,
            ),
        )
        reader.start()
        producer_ready, go, producer_out = ctx.Event(), ctx.Event(), ctx.Queue()
        assets = frame["asset_id"].tolist()
        ts = frame["ts_ms"].to_numpy(np.int64)
        producer = ctx.Process(
            target=produce,
            name="producer",
            daemon=True,
            args=(
                servers,
                settings.readings_topic,
                assets,
                ts,
                frame[list(CHANNELS)].to_numpy(np.float64),
                list(CHANNELS),
                rate,
                producer_ready,
                go,
                producer_out,
            ),
        )
        producer.start()

        service = Service.on_kafka(settings, detector)
        grace_ms = service.processor.windower.grace_ms  # the version's, or --grace-intervals'
        stop = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                service.run(stop)
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)

        runner = threading.Thread(target=run, name="service", daemon=True)
        runner.start()
        try:
            wait_for("anomaly reader", reader_ready.is_set, 60, reader.is_alive)
            wait_for(
                "partition assignment",
                lambda: (
                    len(service.source.assigned) == args.partitions
                    and not service.source.assigned_new
                ),
                60,
                runner.is_alive,
            )
            wait_for("producer", producer_ready.is_set, 120, producer.is_alive)
            broker_cpu, producer_cpu = CpuSampler(broker.pid), CpuSampler(producer.pid)
            broker_cpu.start()
            producer_cpu.start()
            go.set()
            sent_at, send_errors, first_error = producer_out.get(timeout=args.seconds * 3 + 120)
            produced_by = time.time()
            broker_cpu.done.set()
            producer_cpu.done.set()
            producer.join(30)
            if send_errors:
                raise RuntimeError(f"{send_errors} readings were not delivered: {first_error}")
            wait_for(
                "service catching up",
                lambda: service.stats.records >= len(frame),
                300,
                runner.is_alive,
            )
            caught_up = time.time() - produced_by
            time.sleep(
                3.0
            )  # the last alarms out and read (a quiet asset's last readings wait ~2 s)
        finally:
            reader_stop.set()
            received = (
                reader_out.get(timeout=60) if reader.is_alive() or not reader_out.empty() else []
            )
            reader.join(30)
            stop.set()
            runner.join(120)
            for child in (producer, reader):
                if child.is_alive():
                    child.terminate()
        if failure:
            raise RuntimeError(f"the service failed: {failure[0]!r}") from failure[0]

    produced = dict(zip(zip(assets, ts.tolist()), sent_at.tolist()))
    t = timings(received, produced, faults, spec, grace_ms)

    s = service.stats
    sending = (float(sent_at[0]), float(sent_at[-1]))  # the first and the last send
    streamed_s = sending[1] - sending[0] if len(sent_at) > 1 else 0.0
    result: dict[str, object] = {
        "benchmark": "latency",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "rate": round(rate),
        "rate_from": rate_from,
        "rate_achieved": round(len(frame) / max(streamed_s, 1e-9)),
        "assets": args.assets,
        "partitions": args.partitions,
        "seconds": round(streamed_s, 1),
        "readings": len(frame),
        "readings_per_asset": per_asset,
        "per_asset_interval_ms": round(1000 * args.assets / rate, 1),
        "window": spec.window,
        "grace_readings": grace_ms // spec.interval_ms,
        "min_windows": spec.recipe.min_windows,
        "runtime": args.runtime,
        "commit_interval_s": settings.commit_interval_s,
        "poll_timeout_ms": settings.poll_timeout_ms,
        "archive": bool(settings.archive_uri),
        "training": training,
        "faults": {
            "assets_with_faults": len(faulty_assets),
            "per_asset": faults_per_asset,
            "injected": len(faults),
            "detected": len(t.match.detected),
        },
        "alarms": {
            "opened": len(t.opened),
            "on_injected_faults": len(t.opened) - len(t.match.false_alarms),
            "false_alarms": len(t.match.false_alarms),
            "without_produced_reading": t.unmatched,
        },
        "latency_ms": figures(t.latency),
        "latency_ms_injected_faults": figures(t.latency_faults),
        # At a constant rate the embedded broker's CPU rises through a run, and the latency with
        # it: both by third of the stream, so a run shows which.
        "latency_ms_by_third_of_stream": by_third(t.timed, *sending),
        "broker_cpu_share_by_third": broker_cpu.share_by_third(*sending),
        "producer_cpu_share_by_third": producer_cpu.share_by_third(*sending),
        "parts_ms": {
            "grace_wait": figures(t.grace_wait),
            "service": figures(t.in_service),
            "delivery": figures(t.delivery),
        },
        "detection_delay_readings": (
            {"p50": float(np.median(t.delay_readings)), "max": int(max(t.delay_readings))}
            if t.delay_readings
            else {}
        ),
        "service": {
            "records": s.records,
            "rejected": s.rejected,
            "windows": s.windows,
            "polls": s.batches,
            "readings_per_poll": round(s.records / max(s.batches, 1)),
            "caught_up_s": round(caught_up, 2),
        },
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
