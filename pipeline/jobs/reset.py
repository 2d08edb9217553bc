"""Reprocessing on purpose: a group's committed offsets on the readings topic and its state reset
together (``sensorwatch reset``), refused while the group has members.

Offsets alone would not do: the group's state changelog holds, for each asset, the source offsets
its windows already took, so a replica moved back would skip every reading again as one it holds
(and its windows and alarms would go on from where they stood). So the state goes too: a
tombstone for every asset in ``<group>.<readings topic>.state``. It is cleared before the offsets
move, so a reset cut short leaves a group that goes on from where it was with fresh windows, never
one that skips what it was meant to score again.

``--to-datetime`` moves each partition to its first record whose Kafka timestamp (the time it was
produced, unless the topic keeps append times) is at or after the time. The broker's time index
answers first, and the records from there are read until the first such one: a broker that
answers imprecisely (the embedded one answers offset 0) costs a read of the records before it, a
precise one a single fetch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.kafka import changelog, clients
from sensorwatch.pipeline.settings import Settings

log = logging.getLogger("sensorwatch.pipeline")


@dataclass(frozen=True)
class Reset:
    """What a reset did: the group's offsets before and after, per partition, and the state
    cleared."""

    group: str
    topic: str
    to: str  # "the earliest" or the time
    before: dict[int, int | None]  # committed offset per partition (None: none committed)
    after: dict[int, int]
    changelog: str
    cleared: int  # assets whose state was dropped

    def summary(self) -> str:
        again = sum(max(0, (b or 0) - self.after[p]) for p, b in self.before.items())
        offsets = " ".join(f"{p}:{o}" for p, o in sorted(self.after.items()))
        return (
            f"group {self.group}: offsets on {self.topic} moved to {self.to} (partition:offset "
            f"{offsets}; {again} readings committed before are read again); state of "
            f"{self.cleared} asset(s) cleared on {self.changelog}"
        )


def reset(settings: Settings, group: str, when: datetime | None = None) -> Reset:
    """Reset ``group``'s offsets on the readings topic to the earliest (``when`` None) or to the
    first record at or after ``when``, and clear its state; ``UserError`` while it has members."""
    settings = settings.model_copy(update={"group_id": group})
    state_topic = changelog.changelog_topic(settings)  # an illegal name: refused before anything
    topic = settings.readings_topic
    if topic not in clients.topics(settings):
        raise UserError(f"no topic {topic!r} on {settings.bootstrap_servers}")
    present = members(settings)
    if present:
        raise UserError(
            f"group {group!r} has {len(present)} active member(s) ({', '.join(present)}): stop "
            "its replicas first, then reset"
        )
    target = offsets_at(settings, None if when is None else int(when.timestamp() * 1000))
    client = clients.admin(settings)
    try:
        committed = client.list_group_offsets({group: list(target)}).get(group, {})
        cleared = changelog.clear(settings)
        refused = {
            tp.partition: error.__name__
            for tp, error in client.alter_group_offsets(
                group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in target.items()}
            ).items()
            if error.errno != 0
        }
    finally:
        client.close()
    if refused:  # a replica joined meanwhile: its commits are its own
        raise UserError(
            f"group {group!r}: the broker refused the new offsets (partition {refused}); a "
            f"replica joined meanwhile? The state was cleared ({cleared} asset(s)): stop the "
            "group's replicas and reset again"
        )
    result = Reset(
        group=group,
        topic=topic,
        to="the earliest" if when is None else when.isoformat(),
        before={
            tp.partition: committed[tp].offset if tp in committed else None for tp in sorted(target)
        },
        after={tp.partition: o for tp, o in target.items()},
        changelog=state_topic,
        cleared=cleared,
    )
    log.info("reset %s", result.summary())
    return result


def members(settings: Settings) -> list[str]:
    """The members the settings' group has now, as ``client@host`` (or their member ids)."""
    client = clients.admin(settings)
    try:
        described = client.describe_groups([settings.group_id]).get(settings.group_id, {})
    finally:
        client.close()
    return [
        f"{m.get('client_id') or m.get('member_id')}@{m.get('client_host') or '?'}"
        for m in described.get("members") or ()
    ]


def offsets_at(settings: Settings, when_ms: int | None) -> dict[TopicPartition, int]:
    """Each readings partition's earliest offset (``when_ms`` None), or the offset of its first
    record produced at or after ``when_ms`` (its end when there is none)."""
    reader = clients.consumer(settings, standalone=True)
    try:
        tps = [
            TopicPartition(settings.readings_topic, p)
            for p in sorted(reader.partitions_for_topic(settings.readings_topic) or ())
        ]
        first = reader.beginning_offsets(tps)
        if when_ms is None:
            return first
        indexed = reader.offsets_for_times(dict.fromkeys(tps, when_ms))
        end = reader.end_offsets(tps)
        return {
            tp: _first_at(reader, tp, indexed[tp].offset if indexed[tp] else end[tp], when_ms)
            for tp in tps
        }
    finally:
        reader.close()


def _first_at(reader, tp: TopicPartition, start: int, when_ms: int, settle_ms: int = 300) -> int:
    """The offset of the first record at ``start`` or after whose timestamp is ``when_ms`` or
    later; the partition's end when none is."""
    reader.assign([tp])
    reader.seek(tp, start)
    end = reader.end_offsets([tp])[tp]
    while True:
        records = reader.poll(settle_ms).get(tp, [])
        for rec in records:
            if rec.timestamp >= when_ms:
                return rec.offset
        if not records and reader.position(tp) >= end:  # read to the end, and it stays quiet
            return reader.position(tp)
