"""Start-up: from launching ``sensorwatch serve`` to its first commit, cold and with a warm cache.

On the embedded broker, a small champion trained and registered in a fresh MLflow store (SQLite)
by ``sensorwatch train --promote``, and a few thousand readings on the readings topic; then
``sensorwatch serve`` is started ``--runs`` times, each as a new consumer group, and timed from
launch to the group's first committed offset. The first run starts cold (no local copy of the
champion, no compiled forward pass on disk); the others find both in ``cache_dir``. Each runtime
(``SENSORWATCH_RUNTIME``: the Keras model, or the exported graph in ONNX Runtime) is started in
the same run, on the same champion and broker.

Prints one JSON object (seconds per run, the cold and the best warm figure) and writes it to
``benchmarks/results/startup.json``. Asserts no timing.

    python benchmarks/startup.py [--runs 3] [--partitions 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def committed(admin, group: str) -> int:
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(max(getattr(meta, "offset", meta), 0) for meta in offsets.values())


def first_commit(
    env: dict[str, str], cwd: Path, admin, group: str, trace: bool, limit_s: float = 300
) -> float:
    """Seconds from launching ``sensorwatch serve`` to the group's first commit; with ``trace``,
    its log lines go to stderr with the seconds since launch."""
    serve = Path(sys.executable).with_name("sensorwatch")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(serve), "serve"],
        env={**env, "SENSORWATCH_GROUP_ID": group},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if trace:
                print(
                    f"{time.perf_counter() - started:7.2f}  {line.rstrip()}",
                    file=sys.stderr,
                    flush=True,
                )

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not committed(admin, group):
            if proc.poll() is not None:
                reader.join(5)
                raise RuntimeError(
                    f"sensorwatch serve exited ({proc.returncode}): {''.join(lines)[-2000:]}"
                )
            if time.perf_counter() - started > limit_s:
                raise RuntimeError(f"no commit within {limit_s} s")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="Starts in all: one cold, the rest warm."
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--runtimes",
        default="keras,onnx",
        help="The runtimes to start with (SENSORWATCH_RUNTIME), each cold first, in one run.",
    )
    parser.add_argument(
        "--trace", action="store_true", help="Print each start's log lines with their times."
    )
    args = parser.parse_args()

    from kafka import KafkaAdminClient

    from sensorwatch.pipeline.dev.broker import EmbeddedBroker
    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.dev.simulator import Simulator
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.settings import Settings

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker(clients.service_topics(Settings()), partitions=args.partitions) as broker,
    ):
        work = Path(tmp)
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "SENSORWATCH_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "SENSORWATCH_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "SENSORWATCH_ARTIFACT_ROOT": str(work / "artifacts"),
            "SENSORWATCH_CACHE_DIR": str(work / "cache"),
            "SENSORWATCH_ARCHIVE_URI": str(work / "archive"),
        }
        settings = Settings(bootstrap_servers=broker.bootstrap_servers)
        clients.ensure_topics(
            settings, clients.service_topics(settings), partitions=args.partitions
        )
        train = [
            str(Path(sys.executable).with_name("sensorwatch")),
            "train",
            "--assets",
            "2",
            "--readings",
            "400",
            "--promote",
        ]
        subprocess.run(
            train,
            env={**env, "SENSORWATCH_EPOCHS": "2"},
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        frame = Simulator(assets=20, seed=3, start_ms=int(time.time() * 1000) - 86_400_000).normal(
            200
        )
        produce_frame(settings, frame, progress=False)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        by_runtime = {}
        try:
            for runtime in args.runtimes.split(","):
                shutil.rmtree(work / "cache", ignore_errors=True)  # the first start is cold
                started = {**env, "SENSORWATCH_RUNTIME": runtime}
                runs = [
                    round(
                        first_commit(
                            started, work, admin, f"startup-{uuid.uuid4().hex[:8]}", args.trace
                        ),
                        2,
                    )
                    for _ in range(args.runs)
                ]
                by_runtime[runtime] = {
                    "runs_s": runs,
                    "cold_s": runs[0],
                    "warm_s": min(runs[1:]) if len(runs) > 1 else None,
                }
        finally:
            admin.close()
    result = {
        "benchmark": "startup",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "partitions": args.partitions,
        "runtimes": by_runtime,
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
