"""The state changelog: a compacted topic holding each asset's latest state, read back on assignment.

Per-asset state (window buffers, readings waiting for their grace period, threshold and alarm
state, and the source offsets it already holds) is written to the changelog at every checkpoint,
after the events and dead letters are durable and before the offsets are committed
(``ChangelogSink``). When a replica is given a partition (at start, after a crash, in a
rebalance), it reads that partition of the changelog back before it touches a reading of it, so
it carries on where the last owner stopped; readings the restored state already holds are
skipped on the replay (``stream.step``). The topic is compacted: only each asset's newest record
matters.
"""

from __future__ import annotations

import logging
import time

from kafka import TopicPartition

from sensorwatch.pipeline.kafka import clients
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream import state
from sensorwatch.pipeline.stream.processor import Processor

log = logging.getLogger("sensorwatch.pipeline")

COMPACTED = {"cleanup.policy": "compact"}


def changelog_topic(settings: Settings) -> str:
    return f"{settings.readings_topic}.state"


def ensure_changelog(settings: Settings) -> str:
    """The changelog topic, created compacted with at least as many partitions as the readings topic."""
    topic = changelog_topic(settings)
    probe = clients.consumer(settings, standalone=True)
    try:
        partitions = len(probe.partitions_for_topic(settings.readings_topic) or ()) or 1
    finally:
        probe.close()
    clients.ensure_topics(settings, [topic], partitions=partitions, configs=COMPACTED)
    return topic


def restore(
    settings: Settings, partitions: set[int], processor: Processor, settle_s: float = 0.3
) -> int:
    """Load every asset state stored in these changelog partitions into ``processor``; returns how many."""
    if not partitions:
        return 0
    topic = changelog_topic(settings)
    began = time.monotonic()
    reader = clients.consumer(settings, standalone=True)
    latest: dict[bytes, bytes | None] = {}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        end = reader.end_offsets(tps)
        # Read to the end the broker reports, then on until the topic stays quiet a moment (some
        # brokers report the end a few records late).
        while True:
            polled = reader.poll(int(settle_s * 1000))
            for records in polled.values():
                for rec in records:
                    latest[rec.key] = rec.value
            if not polled and all(reader.position(tp) >= end[tp] for tp in tps):
                break
    finally:
        reader.close()
    restored = 0
    for key, value in latest.items():
        asset_id = key.decode(errors="replace") if key else ""
        if value is None:  # a tombstone: the asset's state was dropped
            continue
        try:
            processor.load_state(asset_id, state.decode(value))
            restored += 1
        except (state.StateError, KeyError, ValueError, TypeError) as exc:
            log.warning("state not restored asset=%s: %s (it starts afresh)", asset_id, exc)
    log.info(
        "restored partitions=%s assets=%d seconds=%.2f",
        sorted(partitions),
        restored,
        time.monotonic() - began,
    )
    return restored
