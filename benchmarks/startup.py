"""Start-up: from launching ``sensorwatch serve`` to ready (``/readyz`` 200) and to its first
commit, cold and with the champion's local copy.

On the embedded broker, a small champion trained and registered in a fresh MLflow store (SQLite)
by ``sensorwatch train --promote``, and a few thousand readings on the readings topic; then
``sensorwatch serve`` is started ``--runs`` times, each as a new consumer group, and timed from
launch to ``/readyz`` answering 200 (a model, partitions, a broker) and to the group's first
committed offset. The first run starts cold (no local copy of the champion, no compiled forward
pass on disk: the champion comes from MLflow); the others find both in ``cache_dir`` and start
from the copy. Each runtime (``SENSORWATCH_RUNTIME``: the Keras model, or the exported graph in
ONNX Runtime) is started in the same run, on the same champion and broker.

The group join is timed alone too (a bare consumer joining a new group, ``join_s``): the embedded
broker (tansu) holds a new member's join for about half the session timeout, whatever the client
does, so ``--session-timeout-ms`` (default: the setting's) bounds ready from below on it; a Kafka
broker holds it for ``group.initial.rebalance.delay.ms`` (0 in ``docker/compose.yaml``).

Prints one JSON object (seconds per run, the cold and the best warm figures) and writes it to
``benchmarks/results/startup.json``. Asserts no timing.

    python benchmarks/startup.py [--runs 3] [--partitions 4] [--session-timeout-ms 10000]
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
import urllib.request
import uuid
from pathlib import Path

from replicas import committed

RESULTS = Path(__file__).resolve().parent / "results"


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def start(
    env: dict[str, str], cwd: Path, admin, group: str, trace: bool, limit_s: float = 300
) -> dict[str, float]:
    """Seconds from launching ``sensorwatch serve`` to ``/readyz`` 200 and to the group's first
    commit; with ``trace``, its log lines go to stderr with the seconds since launch."""
    from sensorwatch.pipeline.dev.tansu import free_port

    serve = Path(sys.executable).with_name("sensorwatch")
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(serve), "serve"],
        env={**env, "SENSORWATCH_GROUP_ID": group, "SENSORWATCH_METRICS_PORT": str(port)},
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
    seen: dict[str, float] = {}
    try:
        while len(seen) < 2:
            if "ready_s" not in seen and readyz(port):
                seen["ready_s"] = round(time.perf_counter() - started, 2)
            if "commit_s" not in seen and committed(admin, group):
                seen["commit_s"] = round(time.perf_counter() - started, 2)
            if proc.poll() is not None:
                reader.join(5)
                raise RuntimeError(
                    f"sensorwatch serve exited ({proc.returncode}): {''.join(lines)[-2000:]}"
                )
            if time.perf_counter() - started > limit_s:
                raise RuntimeError(f"not ready and committed within {limit_s} s")
            time.sleep(0.01)
        return seen
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(5)


def join_s(settings, session_timeout_ms: int | None) -> float:
    """Seconds a bare consumer takes to join a new group and be given its partitions (the join
    ``serve`` makes while the model loads), as the broker holds it."""
    from sensorwatch.pipeline.kafka.source import KafkaSource

    update = {"group_id": f"join-{uuid.uuid4().hex[:8]}"}
    if session_timeout_ms:
        update["session_timeout_ms"] = session_timeout_ms
    began = time.perf_counter()
    source = KafkaSource(settings.model_copy(update=update))
    try:
        while not source.assigned:
            source.poll(100)
        return round(time.perf_counter() - began, 2)
    finally:
        source.close()


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
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=None,
        help="SENSORWATCH_SESSION_TIMEOUT_MS of every start (default: the setting's, 10000); the "
        "embedded broker holds a join for about half of it.",
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
        if args.session_timeout_ms:
            env["SENSORWATCH_SESSION_TIMEOUT_MS"] = str(args.session_timeout_ms)
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
            joins = [join_s(settings, args.session_timeout_ms) for _ in range(2)]
            for runtime in args.runtimes.split(","):
                shutil.rmtree(work / "cache", ignore_errors=True)  # the first start is cold
                started = {**env, "SENSORWATCH_RUNTIME": runtime}
                runs = [
                    start(started, work, admin, f"startup-{uuid.uuid4().hex[:8]}", args.trace)
                    for _ in range(args.runs)
                ]
                warm = runs[1:]
                by_runtime[runtime] = {
                    "runs": runs,
                    "cold_ready_s": runs[0]["ready_s"],
                    "cold_commit_s": runs[0]["commit_s"],
                    "warm_ready_s": min(r["ready_s"] for r in warm) if warm else None,
                    "warm_commit_s": min(r["commit_s"] for r in warm) if warm else None,
                }
        finally:
            admin.close()
    result = {
        "benchmark": "startup",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "partitions": args.partitions,
        "session_timeout_ms": args.session_timeout_ms or Settings().session_timeout_ms,
        "join_s": min(joins),
        "runtimes": by_runtime,
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
