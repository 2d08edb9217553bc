"""The two processes of ``latency.py`` beside the service: the producer that sends readings at a
paced rate and notes each send time, and the reader that notes when each anomaly event arrives.
Processes of their own (``spawn``), so neither competes for the service's interpreter lock; and
``wait_for``, which waits for them (or the service) to be ready.
"""

from __future__ import annotations

import time

import numpy as np


def produce(
    servers: str,
    topic: str,
    assets: list[str],
    ts: np.ndarray,
    values: np.ndarray,
    channels: list[str],
    rate: float,
    ready,
    go,
    out,
) -> None:
    """Producer process: encode every reading, then send them paced at ``rate``, noting each send time."""
    from sensorwatch.pipeline.dev.replay import Pacer
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.settings import Settings
    from sensorwatch.schemas.reading_encoder import encode_reading
    from sensorwatch.schemas.records import Reading

    rows = values.tolist()
    messages = [
        encode_reading(Reading(a, int(t), dict(zip(channels, row))))
        for a, t, row in zip(assets, ts.tolist(), rows)
    ]
    keys = [a.encode() for a in assets]
    client = clients.producer(Settings(bootstrap_servers=servers))
    errors: list[Exception] = []
    sent_at = np.zeros(len(messages))
    ready.set()
    go.wait()
    pacer = Pacer(rate)
    try:
        for i, (key, value) in enumerate(zip(keys, messages)):
            pacer.wait(i)
            sent_at[i] = time.time()
            client.send(topic, key=key, value=value).add_errback(errors.append)
        client.flush()
    finally:
        client.close()
    out.put((sent_at, len(errors), repr(errors[0]) if errors else None))


def read_events(servers: str, topic: str, fetch_wait_ms: int, ready, stop, out) -> None:
    """Reader process: every record of the anomalies topic with the wall time it was received."""
    from sensorwatch.pipeline.kafka import clients
    from sensorwatch.pipeline.settings import Settings

    consumer = clients.consumer(
        Settings(bootstrap_servers=servers), topic, standalone=True, fetch_max_wait_ms=fetch_wait_ms
    )
    got: list[tuple[float, bytes]] = []
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=100)
            now = time.time()
            got.extend((now, r.value) for records in polled.values() for r in records)
            if not ready.is_set() and consumer.assignment():
                ready.set()
    finally:
        consumer.close()
    out.put(got)


def wait_for(what: str, done, timeout_s: float, alive=lambda: True) -> None:
    """Until ``done()``; an error naming ``what`` after ``timeout_s`` or once ``alive()`` is false."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if not alive():
            raise RuntimeError(f"stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} in {timeout_s:.0f} s")
        time.sleep(0.05)
