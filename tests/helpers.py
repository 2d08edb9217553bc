"""Helpers for the tests on the embedded broker: topics of one test, running a service, reading a topic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from sensorwatch.models.recipe import Recipe
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.settings import Settings


def sensorwatch_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    outside_settings: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``sensorwatch ARGS`` in a process of its own, as a user runs it, its output captured: the
    environment is this one's with ``env`` on top (``outside_settings=False``: without any
    ``SENSORWATCH_*`` from outside, so the command sees only its defaults and ``cwd``)."""
    base = {
        k: v for k, v in os.environ.items() if outside_settings or not k.startswith("SENSORWATCH_")
    }
    return subprocess.run(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**base, **(env or {})},
    )


# The in-memory service tests' recipe: short windows, every anomalous window an alarm of its own,
# no alarm rule holding one back.
RECIPE = Recipe(
    window=4,
    score="mean",
    min_windows=1,
    merge_windows=0,
    suppress_windows=0,
    clear_ratio=0.0,
    rearm_ratio=0.0,
    grace_intervals=2,
)


def fresh(settings: Settings) -> Settings:
    """Topics, group, champion copy and archive of this test alone (folders in the settings' own)."""
    tag = uuid.uuid4().hex[:8]
    update: dict[str, object] = {
        "readings_topic": f"readings-{tag}",
        "anomalies_topic": f"anomalies-{tag}",
        "dlq_topic": f"readings-{tag}.dlq",
        "group_id": f"scorers-{tag}",
        "cache_dir": settings.cache_dir / tag,
    }
    if settings.archive_uri and "://" not in settings.archive_uri:
        update["archive_uri"] = str(Path(settings.archive_uri) / tag)
    s = settings.model_copy(update=update)
    kafka.ensure_topics(s, kafka.service_topics(s), partitions=2)
    return s


def run_until(service: Service, total: int, timeout_s: float = 90) -> None:
    """Run the service in a thread until it has polled ``total`` records, then stop it."""
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    wait_for(lambda: service.stats.records >= total, timeout_s, every_s=0.2)
    stop.set()
    runner.join(timeout=60)
    assert not runner.is_alive()


def read_all(
    settings: Settings, topic: str, timeout_s: float = 10, expect: int | None = None
) -> list:
    """Every record on ``topic``: read up to its end offsets, asked again once there until two
    answers agree; with ``expect``, until at least that many have come as well. At most
    ``timeout_s`` in all: a test that expects more than there are gets what there is, to fail on.

    The embedded broker's end offset is its last batch's first offset + 1, not the offset after
    its last record: once a position reaches it, that batch was fetched whole, and a poll that
    hands out nothing more means it was all read."""
    from kafka import TopicPartition

    reader = kafka.consumer(settings, standalone=True)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(parts)
        reader.seek_to_beginning(*parts)
        end = reader.end_offsets(parts)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = [r for batch in reader.poll(timeout_ms=100).values() for r in batch]
            records += got
            if got or not all(reader.position(tp) >= end[tp] for tp in parts):
                continue  # the answer below comes 100 ms after the last record, at least
            if expect is not None and len(records) < expect:
                continue
            again = reader.end_offsets(parts)
            if again == end:
                break
            end = again
        return records
    finally:
        reader.close()


def committed(settings: Settings) -> int:
    """Offsets the service's group has committed on the readings topic, summed over partitions."""
    from kafka import TopicPartition

    probe = kafka.consumer(settings)
    try:
        parts = probe.partitions_for_topic(settings.readings_topic) or set()
        return sum(probe.committed(TopicPartition(settings.readings_topic, p)) or 0 for p in parts)
    finally:
        probe.close()


def wait_for(condition, timeout_s: float = 90, every_s: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def metric(port: int, name: str) -> float:
    """The value of one unlabelled sample on a service's /metrics (-1 while nothing answers)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return -1.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return -1.0


def serve_process(
    settings: Settings, tracking_uri: str, cwd, log_name: str = "serve.log", **extra: str
):
    """``sensorwatch serve`` in a subprocess of its own (so it can be killed for real), logging to a
    file; ``extra`` settings by name (``model_name="x"`` sets ``SENSORWATCH_MODEL_NAME``)."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "SENSORWATCH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SENSORWATCH_READINGS_TOPIC": settings.readings_topic,
        "SENSORWATCH_ANOMALIES_TOPIC": settings.anomalies_topic,
        "SENSORWATCH_DLQ_TOPIC": settings.dlq_topic,
        "SENSORWATCH_GROUP_ID": settings.group_id,
        "SENSORWATCH_TRACKING_URI": tracking_uri,
        "SENSORWATCH_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "SENSORWATCH_MAX_POLL_INTERVAL_MS": str(settings.max_poll_interval_ms),
        "SENSORWATCH_POLL_TIMEOUT_MS": str(settings.poll_timeout_ms),
        "SENSORWATCH_MAX_POLL_RECORDS": str(settings.max_poll_records),
        "SENSORWATCH_RELOAD_INTERVAL_S": "0",
        "SENSORWATCH_COMMIT_INTERVAL_S": str(settings.commit_interval_s),
        "SENSORWATCH_ARCHIVE_URI": settings.archive_uri,
        **{f"SENSORWATCH_{name.upper()}": value for name, value in extra.items()},
    }
    log = open(cwd / log_name, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "sensorwatch.pipeline.cli", "serve"],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


# ``serve``'s start-up in a process of its own: what it had imported when it became ready (as
# ``/readyz`` says: a model, a broker, partitions given), and what it imported by the time it had
# scored argv[1] readings. Printed as one JSON line.
SERVE_AND_SAY = """
import json, sys, threading, time
from sensorwatch.pipeline.service.startup import in_background, start_service
from sensorwatch.pipeline.settings import Settings

def loaded(*names):
    return sorted(m for m in sys.modules if m.split(".")[0] in names)

began = time.perf_counter()
service = start_service(Settings())
stop = threading.Event()
done = in_background(service.run, stop)
deadline = time.monotonic() + 90
while not service.health.ready()[0] and time.monotonic() < deadline:
    time.sleep(0.01)  # as /readyz would be asked: ready once the group has given partitions
ready, why = service.health.ready()
at_ready = {
    "seconds": round(time.perf_counter() - began, 2),
    "ready": ready,
    "why": why,
    "mlflow": loaded("mlflow")[:5],
    "tensorflow": "tensorflow" in sys.modules,
    "version": service.processor.detector.version,
}
while service.stats.scored < int(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)  # polls the count, as wait_for does
stop.set()
done.result(60)
print(json.dumps({"at_ready": at_ready, "scored": service.stats.scored,
                  "runtime": service.processor.detector.runtime,
                  "heavy": loaded("tensorflow", "keras", "tf2onnx")}))
"""

SERVE_SETTINGS = (
    "bootstrap_servers readings_topic anomalies_topic dlq_topic group_id session_timeout_ms "
    "max_poll_interval_ms poll_timeout_ms commit_interval_s archive_uri cache_dir"
).split()


def serve_and_say(settings: Settings, cwd: Path, **env: str) -> dict:
    """Two simulated minutes of 3 pumps on the readings topic, then ``SERVE_AND_SAY`` run with
    ``settings`` (and ``env`` on top) as ``SENSORWATCH_*`` variables until it has scored them;
    what it said, with ``sent``, or the test fails with its stderr."""
    import json

    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.dev.simulator import Simulator

    sim = Simulator(assets=3, seed=8, start_ms=int(time.time() * 1000) - 3_600_000)
    sent = produce_frame(settings, sim.normal(120), progress=False)
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENSORWATCH_")},
        **{f"SENSORWATCH_{n.upper()}": str(getattr(settings, n)) for n in SERVE_SETTINGS},
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_SAY, str(sent)],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "sent": sent}
