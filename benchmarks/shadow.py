"""Shadow scoring on the demo's plant: the demo's champion and a challenger score the same stream
with injected faults, side by side, and ``sensorwatch compare`` counts their alarms per asset.

The champion is trained as ``sensorwatch demo`` trains it (8 pumps, 16,000 normal readings each,
the ``plant`` preset); the challenger is a second training on the same readings with a smaller
network (``--units 32 --latent 16`` unless told otherwise), registered with the alias
``challenger``. Both run as ``serve`` and ``serve --shadow`` run them, on an embedded broker and
an MLflow store in a temp folder; then the comparison, and each side's finds against the faults
the simulator injected. Prints the table and writes ``benchmarks/results/shadow.json``.

    python benchmarks/shadow.py [--readings 2500] [--units 32] [--latent 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=8, help="Simulated pumps.")
    parser.add_argument("--readings", type=int, default=2500, help="Readings per pump streamed.")
    parser.add_argument("--units", type=int, default=32, help="The challenger's LSTM units.")
    parser.add_argument("--latent", type=int, default=16, help="The challenger's latent size.")
    args = parser.parse_args()

    from sensorwatch.pipeline.dev.broker import EmbeddedBroker
    from sensorwatch.pipeline.dev.demo_training import DAY_MS, TRAIN_READINGS, demo_settings
    from sensorwatch.pipeline.dev.matching import Match
    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator, series_by_asset
    from sensorwatch.pipeline.jobs.shadow import compare_topics, format_comparison, shadow_settings
    from sensorwatch.pipeline.jobs.train import train_and_register
    from sensorwatch.pipeline.kafka import clients as kafka
    from sensorwatch.pipeline.service.startup import start_service
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.schemas.events import decode_event

    folder = Path(tempfile.mkdtemp(prefix="sensorwatch-shadow-"))
    settings = demo_settings(
        Settings(
            tracking_uri=f"sqlite:///{folder}/mlflow.db",
            artifact_root=str(folder / "artifacts"),
            cache_dir=folder / "champion",
            archive_uri=str(folder / "archive"),
            review_buffer=0,
        )
    )
    # The demo's plant and its time line (a day or more ago, from midnight UTC).
    days_back = 1 + (TRAIN_READINGS + args.readings) * 1000 // DAY_MS
    start = (int(time.time() * 1000) // DAY_MS - days_back) * DAY_MS
    sim = Simulator(assets=args.assets, seed=settings.seed, start_ms=start)
    series = series_by_asset(sim.normal(TRAIN_READINGS))
    source = f"simulator:{args.assets}x{TRAIN_READINGS}"
    t0 = time.perf_counter()
    _, champion = train_and_register(settings, series, list(CHANNELS), source, promote=True)
    smaller = settings.model_copy(
        update={"units": args.units, "latent": args.latent, "model_alias": "challenger"}
    )
    _, challenger = train_and_register(smaller, series, list(CHANNELS), source, promote=True)
    train_s = time.perf_counter() - t0
    frame, faults = sim.with_faults(args.readings, faults_per_asset=2)

    with EmbeddedBroker(kafka.service_topics(settings), settings=settings, log_dir=folder) as b:
        settings = b.settings.model_copy(
            update={"max_poll_interval_ms": 10_000, "session_timeout_ms": 6000}
        )
        kafka.ensure_topics(settings, kafka.service_topics(shadow_settings(settings)))
        services = [start_service(settings), start_service(shadow_settings(settings))]
        stop = threading.Event()
        runners = [threading.Thread(target=s.run, args=(stop,)) for s in services]
        for runner in runners:
            runner.start()
        # Both groups hold their partitions, state restored, before the first reading is sent.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            s.source.assigned and not s.source.assigned_new for s in services
        ):
            time.sleep(0.2)
        sent = produce_frame(settings, frame, None, progress=False)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(s.stats.records < sent for s in services):
            time.sleep(0.5)
        stop.set()
        for runner in runners:
            runner.join(60)
        result = compare_topics(settings)
        finds = {}
        for side, topic in (
            ("champion", settings.anomalies_topic),
            ("shadow", shadow_settings(settings).anomalies_topic),
        ):
            events = [decode_event(v) for v in _values(settings, topic)]
            opened = [e for e in events if e.kind == "opened"]
            spec = services[0].processor.detector.spec
            match = Match.of(opened, faults, spec.window * spec.interval_ms)
            finds[side] = {
                "alarms": len(opened),
                "faults_found": len(match.detected),
                "false_alarms": len(match.false_alarms),
            }

    table = format_comparison(result)
    print(table)
    print(
        f"faults injected {len(faults)} in {sent} readings; "
        + "; ".join(
            f"{side}: {f['alarms']} alarms, {f['faults_found']} faults found, "
            f"{f['false_alarms']} false alarms"
            for side, f in finds.items()
        )
    )
    print(
        f"scored: champion {services[0].stats.scored}, shadow {services[1].stats.scored}; "
        f"training both {train_s:.0f} s"
    )
    RESULTS.mkdir(exist_ok=True)
    out = {
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "challenger": {"units": args.units, "latent": args.latent},
        "readings": sent,
        "faults": len(faults),
        "scored": [s.stats.scored for s in services],
        "windows": [s.stats.windows for s in services],
        "rows": [r.__dict__ for r in result.rows],
        "finds": finds,
        "table": table,
    }
    (RESULTS / "shadow.json").write_text(json.dumps(out, indent=1))


def _values(settings, topic: str) -> list[bytes]:
    from sensorwatch.pipeline.jobs.shadow import read_topic

    return read_topic(settings, topic) or []


if __name__ == "__main__":
    main()
