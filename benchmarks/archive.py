"""Archive write throughput against the service's scoring rate.

Feeds simulated polls (8 pumps, 5 channels) through the service's own in-memory path (parse,
window, one forward pass, decide) with and without the archive sink, flushing the archive as a
checkpoint would, and prints readings per second for scoring alone, scoring plus archive, and the
archive alone, and the Parquet bytes per reading: one JSON object, also written to ``benchmarks/results/archive.json``.

    python benchmarks/archive.py [--readings 40000] [--poll 2000] [--flush-every 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import orjson
from untrained import detector_for

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=40_000, help="Readings in all.")
    parser.add_argument("--poll", type=int, default=2000, help="Records per poll.")
    parser.add_argument(
        "--flush-every", type=int, default=5, help="Polls per checkpoint (archive flush)."
    )
    args = parser.parse_args()

    from sensorwatch.pipeline.archive import ArchiveSink
    from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.records import Polled
    from sensorwatch.pipeline.stream.step import step

    limits = Settings().limits()
    detector = detector_for("plant", "keras")
    frame = Simulator(assets=8, seed=1).normal(args.readings // 8)
    records = [
        Polled(
            "r",
            0,
            i,
            r["asset_id"].encode(),
            orjson.dumps(
                {
                    "asset_id": r["asset_id"],
                    "ts": int(r["ts_ms"]),
                    "values": {c: float(r[c]) for c in CHANNELS},
                }
            ),
        )
        for i, r in enumerate(frame.to_dict("records"))
    ]
    polls = [records[i : i + args.poll] for i in range(0, len(records), args.poll)]

    def run(archive: bool) -> tuple[float, float, int]:
        processor = Processor(detector)
        processor.windower.keep_released = archive
        folder = Path(tempfile.mkdtemp())
        sink = ArchiveSink(str(folder), processor) if archive else None
        in_sink = 0.0
        began = time.perf_counter()
        for k, poll in enumerate(polls, 1):
            out = step(processor, poll, limits, now_ms=2**62)
            if sink is not None:
                t = time.perf_counter()
                sink.write(out)
                if k % args.flush_every == 0 or k == len(polls):
                    sink.flush()
                in_sink += time.perf_counter() - t
        total = time.perf_counter() - began
        size = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
        return total, in_sink, size

    run(False)  # warm
    plain, _, _ = run(False)
    archived, sink_s, size = run(True)
    count = len(records)
    result = {
        "benchmark": "archive",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "readings": count,
        "poll": args.poll,
        "flush_every_polls": args.flush_every,
        "scoring_per_s": round(count / plain),
        "scoring_and_archive_per_s": round(count / archived),
        "archive_time_ratio": round(archived / plain, 2),
        "archive_alone_per_s": round(count / sink_s),
        "parquet_bytes_per_reading": round(size / count, 1),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "archive.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
