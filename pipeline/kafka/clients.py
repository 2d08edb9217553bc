"""Kafka clients built from the settings: one place that knows kafka-python's option names."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from sensorwatch.pipeline.kafka.login import check_login
from sensorwatch.pipeline.settings import KAFKA_SECURITY, Settings

_logged_in: set[tuple[object, ...]] = set()  # security settings a login has succeeded with
FETCH_MAX_WAIT_MS = 10  # the longest a broker holds a fetch that has no records yet


def servers(settings: Settings) -> list[str]:
    if not settings.bootstrap_servers:
        raise ValueError(
            "no Kafka bootstrap servers: set SENSORWATCH_BOOTSTRAP_SERVERS or --bootstrap-servers"
        )
    return [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]


def security(settings: Settings) -> dict[str, object]:
    """The TLS and SASL options every client gets; with TLS or SASL, a login is tried first (once
    per settings), so a refused one is told as such instead of as a broker that never answers."""
    if settings.security_protocol != "PLAINTEXT":
        key = (settings.bootstrap_servers, *(getattr(settings, f) for f in KAFKA_SECURITY))
        if key not in _logged_in and check_login(settings):
            _logged_in.add(key)
    return settings.kafka_security()


def consumer(
    settings: Settings, *topics: str, standalone: bool = False, **overrides: object
) -> KafkaConsumer:
    """A consumer in the service's group, committing by hand (offsets move only after outputs flush);
    ``standalone`` reads outside any group (to watch a topic without taking part in the service's)."""
    opts: dict[str, object] = dict(
        bootstrap_servers=servers(settings),
        group_id=None if standalone else settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.max_poll_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(settings.session_timeout_ms // 3 - 100, 100),
        fetch_max_bytes=max(52_428_800, settings.max_message_bytes * settings.max_poll_records),
        # A broker may hold a fetch for this long even when records arrived meanwhile (the
        # embedded one does): it bounds how late a caught-up service sees a reading. 10 ms costs an
        # idle consumer 100 small fetches a second; kafka-python's default is 500 ms.
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        # kafka-python 3 sometimes finds no fetch in flight between one fetch's answer and the
        # next request, and a poll then sleeps retry_backoff_ms (default 100 ms) with records
        # waiting: about 30 such sleeps a minute at 6,000 readings/s, each a reading 100 ms late.
        # One fetch wait is enough to back off; kafka-python still backs off exponentially on
        # reconnects (reconnect_backoff_ms), which this does not change.
        retry_backoff_ms=FETCH_MAX_WAIT_MS,
        **security(settings),
    )
    opts.update(overrides)
    return KafkaConsumer(*topics, **opts)


def producer(settings: Settings, **overrides: object) -> KafkaProducer:
    """A producer that waits for every replica (acks=all) and batches briefly."""
    opts: dict[str, object] = dict(
        bootstrap_servers=servers(settings),
        acks="all",
        linger_ms=5,
        retries=5,
        **security(settings),
    )
    opts.update(overrides)
    return KafkaProducer(**opts)


class _Admin(KafkaAdminClient):
    """kafka-python's admin client, reading a group's description from any broker: the embedded
    one answers authorized operations with bits that name no ACL operation, which kafka-python
    fails on; nothing here asks for them."""

    def _process_acl_operations(self, obj: dict) -> dict:
        obj["authorized_operations"] = None
        return obj


def admin(settings: Settings) -> KafkaAdminClient:
    """An admin client for the settings' cluster (close it after use)."""
    return _Admin(bootstrap_servers=servers(settings), **security(settings))


def topics(settings: Settings) -> set[str]:
    """The topics the cluster has now."""
    client = admin(settings)
    try:
        return set(client.list_topics())
    finally:
        client.close()


def ensure_topics(
    settings: Settings,
    topics: list[str],
    partitions: int = 4,
    configs: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (with topic ``configs``, e.g. compaction)."""
    admin = KafkaAdminClient(bootstrap_servers=servers(settings), **security(settings))
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                t, num_partitions=partitions, replication_factor=1, topic_configs=configs or {}
            )
            for t in topics
            if t not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def read_to_end(
    settings: Settings,
    topic: str,
    partitions: set[int] | None = None,
    settle_s: float = 0.3,
    timeout_s: float | None = None,
) -> list | None:
    """Every record of ``topic`` (of ``partitions``; all with None) from its beginning up to its
    end now, outside any group, in each partition's order; None when the topic has no partitions.
    The end is reached when every partition's position is at the end offset the broker reported,
    a poll of ``settle_s`` brings nothing more, and the broker, asked again, reports the same end
    (some brokers report the end a few records late). ``TimeoutError`` past ``timeout_s`` (None: no limit)."""
    reader = consumer(settings, standalone=True)
    try:
        if partitions is None:
            found = reader.partitions_for_topic(topic)
            if not found:
                return None
            partitions = set(found)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        end = reader.end_offsets(tps)
        records: list = []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            polled = reader.poll(timeout_ms=int(settle_s * 1000))
            for batch in polled.values():
                records += batch
            if not polled and all(reader.position(tp) >= end[tp] for tp in tps):
                again = reader.end_offsets(tps)  # a late end moves on: read on to it
                if again == end:
                    return records
                end = again
        raise TimeoutError(f"{topic}: not read to its end in {timeout_s:.0f} s")
    finally:
        reader.close()


def service_topics(settings: Settings) -> list[str]:
    return [settings.readings_topic, settings.anomalies_topic, settings.dlq_topic]
