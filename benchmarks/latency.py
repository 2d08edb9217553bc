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

import argparse
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
from procstat import CpuSampler

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE = "service_kafka-python_stride_1"  # throughput.py's run of the default client and stride
DEFAULT_RATE = 5000.0  # readings per second when neither --rate nor a throughput result says
TAIL = 5  # normal readings per asset after the faulty stretch: no alarm waits for the stream's end
LONGEST_FAULT = 300  # readings: the simulator's longest fault (simulator._place)


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


def by_third(pairs: list[tuple[float, float]], start: float, end: float) -> list[dict]:
    """``figures`` of the latencies whose reading was produced in each third of [start, end]."""
    thirds: list[list[float]] = [[], [], []]
    for t0, value in pairs:
        thirds[min(2, max(0, int(3 * (t0 - start) / max(end - start, 1e-9))))].append(value)
    return [figures(values) for values in thirds]


def figures(values_s: list[float]) -> dict[str, float | int]:
    """Count and percentiles of durations given in seconds, in milliseconds."""
    if not values_s:
        return {"count": 0}
    ms = np.asarray(values_s) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "count": len(ms),
        "p50": round(p50, 1),
        "p90": round(p90, 1),
        "p99": round(p99, 1),
        "max": round(float(ms.max()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()
    if not 0 <= args.faulty <= 1 or args.assets < 1 or args.seconds <= 0:
        parser.error("--faulty is a share in [0, 1]; --assets and --seconds must be positive")
    rate, rate_from = (args.rate, "--rate") if args.rate else default_rate()
    per_asset = int(rate * args.seconds / args.assets)

    from sensorwatch.pipeline.dev.broker import EmbeddedBroker
    from sensorwatch.pipeline.dev.demo import Match
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.service.loop import Service
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.schemas.events import decode_event
    from sensorwatch.schemas.records import ms_of

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
    opened = [(at, decode_event(raw)) for at, raw in received]
    opened = [(at, e) for at, e in opened if e.kind == "opened"]
    tolerance = spec.window * spec.interval_ms
    match = Match.of([e for _, e in opened], faults, tolerance)
    false_ids = {e.event_id for e in match.false_alarms}
    latency, latency_faults, grace_wait, in_service, delivery, delay_readings = (
        [],
        [],
        [],
        [],
        [],
        [],
    )
    unmatched = 0
    timed: list[tuple[float, float]] = []  # (when its reading was produced, latency)
    for at, e in opened:
        end = e.end_ms
        t0 = produced.get((e.asset_id, end))
        if t0 is None:
            unmatched += 1
            continue
        latency.append(at - t0)
        timed.append((t0, at - t0))
        if e.event_id not in false_ids:
            latency_faults.append(at - t0)
        detected = ms_of(e.detected_at) / 1000
        delivery.append(at - detected)
        released = produced.get((e.asset_id, end + grace_ms))
        if released is not None:  # else the window was released by the quiet-asset check
            grace_wait.append(released - t0)
            in_service.append(detected - released)
    for f in faults:
        ends = [
            e.end_ms
            for _, e in opened
            if e.asset_id == f.asset_id and f.start_ms <= e.end_ms <= f.end_ms + tolerance
        ]
        if ends:
            delay_readings.append((min(ends) - f.start_ms) // spec.interval_ms)

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
            "detected": len(match.detected),
        },
        "alarms": {
            "opened": len(opened),
            "on_injected_faults": len(opened) - len(match.false_alarms),
            "false_alarms": len(match.false_alarms),
            "without_produced_reading": unmatched,
        },
        "latency_ms": figures(latency),
        "latency_ms_injected_faults": figures(latency_faults),
        # At a constant rate the embedded broker's CPU rises through a run, and the latency with
        # it: both by third of the stream, so a run shows which.
        "latency_ms_by_third_of_stream": by_third(timed, *sending),
        "broker_cpu_share_by_third": broker_cpu.share_by_third(*sending),
        "producer_cpu_share_by_third": producer_cpu.share_by_third(*sending),
        "parts_ms": {
            "grace_wait": figures(grace_wait),
            "service": figures(in_service),
            "delivery": figures(delivery),
        },
        "detection_delay_readings": (
            {"p50": float(np.median(delay_readings)), "max": int(max(delay_readings))}
            if delay_readings
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
