"""Service replicas in processes of their own, in one consumer group, timed from the first poll
any of them decided to the last (``end_to_end``; ``throughput.py`` runs them). Run as a script, this
module is one replica: ``python benchmarks/replicas.py SETTINGS_JSON`` serves the benchmark's
untrained model until SIGTERM, then prints its stats and when it decided its first and last poll."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from untrained import detector_for


def committed(admin, group: str) -> int:
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(max(getattr(meta, "offset", meta), 0) for meta in offsets.values())


def replica(settings_json: str) -> None:
    """One replica process: the service on the benchmark's model until SIGTERM."""
    from sensorwatch.pipeline.service.loop import Service
    from sensorwatch.pipeline.service.signals import stop_on_signals
    from sensorwatch.pipeline.settings import Settings

    stop = threading.Event()
    stop_on_signals(stop)
    settings = Settings(**json.loads(settings_json))
    service = Service.on_kafka(settings, detector_for(runtime=settings.runtime))
    marks: dict[str, float] = {}
    watcher = threading.Thread(target=_watch, args=(service, stop, marks), daemon=True)
    watcher.start()
    stats = service.run(stop)
    watcher.join(1)
    print(json.dumps({**dataclasses.asdict(stats), **marks}), flush=True)


def _watch(service, stop: threading.Event, marks: dict[str, float]) -> None:
    """When the replica decided its first poll (and how many records it held) and its last one, on
    the wall clock every replica shares: the run is timed by these, not by the group's commits,
    which come every ``commit_interval_s`` (5 s) and would round a run of seconds to that."""
    seen = 0
    while not stop.is_set():
        done = service.stats.records
        if done != seen:
            now = time.time()
            if not seen:
                marks["first_decided_at"], marks["first_records"] = now, done
            marks["last_decided_at"], seen = now, done
        time.sleep(0.002)


def end_to_end(
    settings, fields: dict[str, object], total: int, replicas: int, profile: Path | None = None
) -> dict[str, float]:
    """``replicas`` service processes in one group, timed from the first poll any of them decided to
    the last; the run ends once every record is committed. Start-up is from spawning the
    processes to the group's first commit."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    command = [sys.executable, __file__, json.dumps(fields)]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for _ in range(replicas)
    ]
    spies = (
        []
        if profile is None
        else [  # attached: they write their profile when the replica exits
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--threads",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--pid",
                    str(p.pid),
                    "-o",
                    str(profile.with_suffix(f".{i}.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, p in enumerate(procs)
        ]
    )
    first = first_at = None
    try:
        while True:
            done = committed(admin, settings.group_id)
            now = time.perf_counter()
            if done and first is None:
                first, first_at = done, now
            if done >= total:
                break
            if now - started > 900:
                raise RuntimeError(f"the service committed {done} of {total} in 900 s")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(
                    f"a replica exited (code {[p.returncode for p in procs]}) after {done} of {total}"
                )
            time.sleep(0.05)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        stats = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=60)
                stats.append(json.loads(out.strip().splitlines()[-1]))
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                p.kill()
        for spy in spies:
            spy.wait(60)
        admin.close()
    # From the first poll any replica decided to the last: records after that first poll.
    firsts = [
        (st["first_decided_at"], st["first_records"]) for st in stats if "first_records" in st
    ]
    lasts = [st["last_decided_at"] for st in stats if "last_decided_at" in st]
    if len(firsts) != replicas or len(lasts) != replicas:
        raise RuntimeError(f"a replica did not report when it decided its polls: {stats}")
    began_at, began_with = min(firsts)
    return {
        "readings_per_s": round((total - began_with) / max(max(lasts) - began_at, 1e-9)),
        "first_commit_s": round(first_at - started, 2),
        "all_committed_s": round(now - first_at, 2),
        **{
            k: round(sum(s.get(k, 0) for s in stats), 2)
            for k in ("records", "windows", "batches", "busy_s", "scoring_s")
        },
        "records_per_replica": [s.get("records", 0) for s in stats],
    }


if __name__ == "__main__":
    replica(sys.argv[1])
