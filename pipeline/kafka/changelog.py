"""The state changelog: a compacted topic holding each asset's latest state, read back on assignment.

Per-asset state (window buffers, readings waiting for their grace period, threshold and alarm
state, and the source offsets it already holds) is written to the changelog at every checkpoint,
after the events and dead letters are durable and before the offsets are committed
(``ChangelogSink``). When a replica is given a partition (at start, after a crash, in a
rebalance), it reads that partition of the changelog back before it touches a reading of it, so
it carries on where the last owner stopped; readings the restored state already holds are
skipped on the replay (``stream.step``). The topic is compacted: only each asset's newest record
matters.

Each deployment (consumer group) has a changelog of its own, ``<group>.<readings topic>.state``,
as Kafka Streams names changelogs by application id: two groups reading one topic never restore
each other's state. ``clear`` writes a tombstone for every asset in it (``sensorwatch reset``).
"""

from __future__ import annotations

import logging
import re
import time

from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.kafka import clients
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream import state
from sensorwatch.pipeline.stream.processor import Processor

log = logging.getLogger("sensorwatch.pipeline")

COMPACTED = {"cleanup.policy": "compact"}


# What Kafka takes as a topic name (kafka.common.internals.Topic): these characters, 1 to 249.
LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def changelog_topic(settings: Settings) -> str:
    """The group's state changelog, ``<group>.<readings topic>.state``; a group id that makes no
    legal topic name is refused (``UserError``), before anything starts.

    >>> changelog_topic(Settings(group_id="scorers", readings_topic="readings"))
    'scorers.readings.state'
    """
    topic = f"{settings.group_id}.{settings.readings_topic}.state"
    if not LEGAL_TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise UserError(
            f"group {settings.group_id!r} on topic {settings.readings_topic!r}: the state "
            f"changelog {topic!r} is no legal Kafka topic name (letters, digits, '.', '_' and '-', "
            "at most 249 characters): choose another SENSORWATCH_GROUP_ID"
        )
    return topic


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
    began = time.monotonic()
    latest = read_back(settings, partitions, settle_s)
    restored = 0
    for key, (_, value) in latest.items():
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


def read_back(
    settings: Settings, partitions: set[int] | None = None, settle_s: float = 0.3
) -> dict[bytes, tuple[int, bytes | None]]:
    """Each key's newest record in these changelog partitions (all of them with None): its
    partition and value (None for a tombstone). A changelog not made yet holds nothing."""
    records = clients.read_to_end(settings, changelog_topic(settings), partitions, settle_s) or []
    return {rec.key: (rec.partition, rec.value) for rec in records}


def clear(settings: Settings) -> int:
    """Drop every asset's state in the group's changelog: a tombstone for each key that still
    holds one, in its own partition (compaction then removes both, on any broker, without the
    topic going away). Returns how many assets' state was dropped."""
    topic = changelog_topic(settings)
    if topic not in clients.topics(settings):  # never made: nothing held (and none made by asking)
        return 0
    live = {key: part for key, (part, value) in read_back(settings).items() if value is not None}
    if not live:
        return 0
    producer = clients.producer(settings)
    try:
        for key, part in live.items():
            producer.send(topic, key=key, value=None, partition=part)
        producer.flush()
    finally:
        producer.close()
    log.info("state cleared topic=%s assets=%d", topic, len(live))
    return len(live)
