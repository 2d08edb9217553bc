"""Helpers for the tests on the embedded broker: topics of one test, running a service, reading a topic."""

from __future__ import annotations

import threading
import time
import uuid

from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.settings import Settings


def fresh(settings: Settings) -> Settings:
    """Topics and group of this test alone."""
    tag = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "readings_topic": f"readings-{tag}",
            "anomalies_topic": f"anomalies-{tag}",
            "dlq_topic": f"readings-{tag}.dlq",
            "group_id": f"scorers-{tag}",
        }
    )
    kafka.ensure_topics(s, kafka.service_topics(s), partitions=2)
    return s


def run_until(service: Service, total: int, timeout_s: float = 90) -> None:
    """Run the service in a thread until it has polled ``total`` records, then stop it."""
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + timeout_s
    while service.stats.records < total and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    runner.join(timeout=60)
    assert not runner.is_alive()


def read_all(settings: Settings, topic: str, timeout_s: float = 10) -> list:
    reader = kafka.consumer(settings, topic, standalone=True, consumer_timeout_ms=int(timeout_s * 1000))
    try:
        return list(reader)
    finally:
        reader.close()
