"""Sending readings to the readings topic: simulator frames and CSV files, keyed by asset id.

Both go through ``send_readings``: one JSON message per reading keyed by its asset (so an asset's
readings share a partition and stay in order), an optional pace in readings per second, a
progress bar, and a flush at the end that fails loudly if any reading was not delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from kafka import KafkaProducer
from tqdm.auto import tqdm

from sensorwatch.pipeline.data.csvfiles import read_sensor_csv
from sensorwatch.pipeline.dev.simulator import readings
from sensorwatch.pipeline.errors import SendError
from sensorwatch.pipeline.kafka.clients import ensure_topics, producer
from sensorwatch.pipeline.settings import Settings
from sensorwatch.schemas.reading_encoder import encode_reading
from sensorwatch.schemas.records import Reading

log = logging.getLogger("sensorwatch.pipeline")


class Pacer:
    """Holds a sender to ``rate`` messages per second on average; ``None`` means no limit.

    >>> clock = iter([0.0, 0.0, 0.25]).__next__
    >>> slept = []
    >>> pacer = Pacer(4.0, clock=clock, sleep=slept.append)
    >>> pacer.wait(0); pacer.wait(1); pacer.wait(2)
    >>> slept
    [0.25, 0.25]
    """

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive readings per second, got {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None

    def wait(self, sent: int) -> None:
        """Return once the message after ``sent`` earlier ones is due."""
        if not self.interval:
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        # Due times count from the start, so a late wake-up is caught up rather than accumulated.
        due = self._start + sent * self.interval
        if due > now:
            self._sleep(due - now)


def send_readings(
    settings: Settings,
    items: Iterable[Reading],
    *,
    total: int | None = None,
    rate: float | None = None,
    progress: bool = False,
    desc: str = "readings",
    client: KafkaProducer | None = None,
) -> int:
    """Send ``items`` to ``settings.readings_topic`` keyed by asset id; returns how many were sent.

    Raises ``SendError`` if the broker refused any of them (sending stops at the first refusal).
    """
    topic = settings.readings_topic
    ensure_topics(settings, [topic])
    own = client is None
    # Bulk sending: a longer linger and bigger batches send ~1.5x as many readings per second.
    client = client or producer(settings, linger_ms=20, batch_size=256 * 1024)
    errors: list[Exception] = []
    pacer, sent, began = Pacer(rate), 0, time.monotonic()
    bar = tqdm(
        total=total, desc=desc, unit="msg", unit_scale=True, disable=not progress, mininterval=0.5
    )
    try:
        for reading in items:
            pacer.wait(sent)
            future = client.send(
                topic, key=reading.asset_id.encode(), value=encode_reading(reading)
            )
            future.add_errback(errors.append)
            sent += 1
            if sent % 512 == 0:
                bar.update(512)
                if errors:
                    break
        client.flush()
        bar.update(sent - bar.n)
    finally:
        bar.close()
        if own:
            client.close()
    if errors:
        raise SendError(
            f"{len(errors)} of {sent} readings to {topic!r} were not delivered: {errors[0]}"
        )
    seconds = time.monotonic() - began
    log.info(
        "sent topic=%s readings=%d seconds=%.2f rate=%.0f",
        topic,
        sent,
        seconds,
        sent / max(seconds, 1e-9),
    )
    return sent


def produce_frame(
    settings: Settings, df: pd.DataFrame, rate: float | None = None, progress: bool = True
) -> int:
    """Send a simulator frame (``asset_id``, ``ts_ms``, channel columns) in event-time order."""
    missing = {"asset_id", "ts_ms"} - set(df.columns)
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(sorted(missing))}")
    if not df["ts_ms"].is_monotonic_increasing:
        df = df.sort_values("ts_ms", kind="stable")
    return send_readings(
        settings, readings(df), total=len(df), rate=rate, progress=progress, desc="simulate"
    )


def replay_csv(
    settings: Settings,
    paths: Sequence[Path | str],
    rate: float | None = None,
    asset_id: str | None = None,
    progress: bool = True,
    time_unit: str | None = None,
    timezone: str | None = None,
    strict: bool = False,
    say: Callable[[str], object] | None = None,
) -> int:
    """Send the readings of CSV files (SKAB ``;`` or plain) merged in event-time order.

    Every file is read before anything is sent, so a bad file (``SourceError``) sends nothing.
    A file's repeated or out-of-order times are handled as ``csv_readings`` says.
    """
    items = csv_readings(paths, asset_id, time_unit, timezone, strict, say)
    total = len(items)
    return send_readings(
        settings, iter(items), total=total, rate=rate, progress=progress, desc="replay"
    )


def asset_for(path: Path | str) -> str:
    """The asset id a CSV file stands for: its stem, prefixed by its folder when the stem is a number.

    >>> asset_for("data/valve1/0.csv"), asset_for("data/anomaly-free/anomaly-free.csv")
    ('valve1-0', 'anomaly-free')
    """
    path = Path(path)
    return (
        f"{path.parent.name}-{path.stem}" if path.stem.isdigit() and path.parent.name else path.stem
    )


def csv_readings(
    paths: Sequence[Path | str],
    asset_id: str | None = None,
    time_unit: str | None = None,
    timezone: str | None = None,
    strict: bool = False,
    say: Callable[[str], object] | None = None,
) -> list[Reading]:
    """The readings of ``paths``, each file as ``asset_id`` or ``asset_for(path)``, in event-time order.

    Each file's rows are sorted and a repeated time kept once (``read_sensor_csv``: ``strict``
    refuses such a file, ``timezone`` places naive local times); ``say`` gets one line per file
    that needed it."""
    frames = [
        read_sensor_csv(path, time_unit=time_unit, timezone=timezone, strict=strict)
        for path in paths
    ]
    for frame in frames:
        if frame.note and say is not None:
            say(frame.note)
    if not frames:
        return []
    owner = np.concatenate([np.full(len(f), i) for i, f in enumerate(frames)])
    row = np.concatenate([np.arange(len(f)) for f in frames])
    order = np.argsort(np.concatenate([f.ts_ms for f in frames]), kind="stable")
    # float32 → its shortest decimal text → float64, so 0.1 is sent as 0.1 and not 0.10000000149.
    values = [f.values.astype(str).astype(np.float64).tolist() for f in frames]
    assets = [asset_id or asset_for(f.path) for f in frames]
    ts = [f.ts_ms.tolist() for f in frames]
    return [
        Reading(assets[i], ts[i][r], dict(zip(frames[i].channels, values[i][r])))
        for i, r in zip(owner[order].tolist(), row[order].tolist())
    ]
