"""Shadow scoring: a challenger scores the live stream beside the champion, and its alarms are
compared with the champion's over the same period, per asset.

A shadow replica (``sensorwatch serve --shadow``) is the service with three settings moved
together (``shadow_settings``): its own consumer group (so its own offsets and state changelog),
the model by the ``challenger`` alias, and its anomaly events on ``<anomalies topic>.shadow``,
which nothing that alerts a person reads. It archives nothing and logs nothing to the review
queue: the champion's replicas do both. ``compare`` reads the two anomaly topics back and counts,
per asset, the alarms each raised, those both raised (overlapping in time), and those only one
raised: the online counterpart of the gate's offline evidence.

>>> a = [Alarm("p1", 0, 10, "1"), Alarm("p1", 50, 60, "1"), Alarm("p2", 0, 5, "1")]
>>> b = [Alarm("p1", 8, 20, "2"), Alarm("p2", 100, 110, "2"), Alarm("p3", 0, 1, "2")]
>>> [(r.asset_id, r.champion, r.shadow, r.both, r.only_champion, r.only_shadow)
...  for r in compare(a, b)]
[('p1', 2, 1, 1, 1, 0), ('p2', 1, 1, 0, 1, 1), ('p3', 0, 1, 0, 0, 1)]
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from sensorwatch.pipeline.settings import Settings
from sensorwatch.schemas.events import decode_event

log = logging.getLogger("sensorwatch.pipeline")

SHADOW_ALIAS = "challenger"
SHADOW_SUFFIX = ".shadow"


def shadow_topic(settings: Settings) -> str:
    """Where a shadow replica of these settings publishes its anomaly events."""
    return f"{settings.anomalies_topic}{SHADOW_SUFFIX}"


def shadow_settings(settings: Settings, alias: str = SHADOW_ALIAS) -> Settings:
    """The settings of a shadow replica beside the service ``settings`` describe: group
    ``<group>.shadow``, the model by ``alias``, events to ``<anomalies>.shadow``, no archive and
    no review logging. Readings, broker and store stay the champion's.

    >>> s = shadow_settings(Settings(group_id="scorers", anomalies_topic="alarms"))
    >>> s.group_id, s.model_alias, s.anomalies_topic, s.archive_uri, s.review_buffer
    ('scorers.shadow', 'challenger', 'alarms.shadow', '', 0)
    """
    return settings.model_copy(
        update={
            "group_id": f"{settings.group_id}{SHADOW_SUFFIX}",
            "model_alias": alias,
            "anomalies_topic": shadow_topic(settings),
            "archive_uri": "",
            "review_buffer": 0,
        }
    )


@dataclass(frozen=True)
class Alarm:
    """One alarm as its events on an anomalies topic tell it: from the start of the window that
    opened it to the end of the last window it was told with (its cleared event's, once cleared)."""

    asset_id: str
    start_ms: int
    end_ms: int
    version: str

    def overlaps(self, other: Alarm) -> bool:
        return self.start_ms <= other.end_ms and other.start_ms <= self.end_ms


@dataclass(frozen=True)
class AssetComparison:
    """Champion and shadow alarms of one asset over the same period. ``both``: the champion's
    alarms that a shadow alarm overlaps; ``only_champion``: the rest of the champion's;
    ``only_shadow``: the shadow's alarms that overlap none of the champion's."""

    asset_id: str
    champion: int
    shadow: int
    both: int
    only_champion: int
    only_shadow: int


@dataclass(frozen=True)
class Comparison:
    """What ``sensorwatch compare`` reports: a row per asset, and the versions seen on each topic."""

    rows: list[AssetComparison]
    champion_versions: list[str]
    shadow_versions: list[str]
    unreadable: int = 0  # records on either topic that are no anomaly event


def compare(champion: list[Alarm], shadow: list[Alarm]) -> list[AssetComparison]:
    """Per asset (sorted), the alarms each raised, both raised and only one raised."""
    by_asset: dict[str, tuple[list[Alarm], list[Alarm]]] = defaultdict(lambda: ([], []))
    for alarm in champion:
        by_asset[alarm.asset_id][0].append(alarm)
    for alarm in shadow:
        by_asset[alarm.asset_id][1].append(alarm)
    rows = []
    for asset, (ours, theirs) in sorted(by_asset.items()):
        both = sum(any(a.overlaps(b) for b in theirs) for a in ours)
        only_shadow = sum(not any(b.overlaps(a) for a in ours) for b in theirs)
        rows.append(
            AssetComparison(asset, len(ours), len(theirs), both, len(ours) - both, only_shadow)
        )
    return rows


def alarms_of(values: list[bytes]) -> tuple[list[Alarm], int]:
    """The alarms the events in ``values`` tell (an opened and a cleared event of one alarm share
    its id; a re-sent event is the same alarm), and how many values were no anomaly event."""
    spans: dict[str, Alarm] = {}
    unreadable = 0
    for value in values:
        try:
            event = decode_event(value)
        except ValueError:
            unreadable += 1
            continue
        seen = spans.get(event.event_id)
        start = min(event.start_ms, seen.start_ms) if seen else event.start_ms
        end = max(event.end_ms, seen.end_ms) if seen else event.end_ms
        spans[event.event_id] = Alarm(event.asset_id, start, end, event.model_version)
    return list(spans.values()), unreadable


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[bytes] | None:
    """Every record value on ``topic`` up to its end now, outside any group; None when the topic
    does not exist. The end is reached when every partition's position is at its end offset and a
    poll brings nothing more (some brokers give a batch's first offset + 1 as the end)."""
    from sensorwatch.pipeline.kafka import clients

    records = clients.read_to_end(settings, topic, timeout_s=timeout_s)
    return None if records is None else [r.value for r in records if r.value is not None]


def compare_topics(
    settings: Settings, since_ms: int | None = None, until_ms: int | None = None
) -> Comparison:
    """Champion (``settings.anomalies_topic``) against shadow (``shadow_topic``) alarms that
    started in ``[since_ms, until_ms)`` (event time: the readings' own times)."""
    topics = settings.anomalies_topic, shadow_topic(settings)
    sides = []
    unreadable = 0
    for topic in topics:
        values = read_topic(settings, topic)
        if values is None:
            raise LookupError(
                f"no topic {topic} on {settings.bootstrap_servers}: "
                + (
                    "start a shadow replica (`sensorwatch serve --shadow`)"
                    if topic == topics[1]
                    else "fix SENSORWATCH_ANOMALIES_TOPIC"
                )
            )
        alarms, bad = alarms_of(values)
        unreadable += bad
        sides.append(
            [
                a
                for a in alarms
                if (since_ms is None or a.start_ms >= since_ms)
                and (until_ms is None or a.start_ms < until_ms)
            ]
        )
    if unreadable:
        log.warning("records=%d on the anomaly topics are no anomaly event: left out", unreadable)
    return Comparison(
        compare(*sides),
        sorted({a.version for a in sides[0]}, key=_number),
        sorted({a.version for a in sides[1]}, key=_number),
        unreadable,
    )


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def format_comparison(result: Comparison) -> str:
    """The comparison as a table, a row per asset and the totals.

    >>> print(format_comparison(Comparison([AssetComparison("p1", 2, 1, 1, 1, 0)], ["1"], ["2"])))
    champion version 1, shadow version 2
    asset  champion  shadow  both  only champion  only shadow
    p1            2       1     1              1            0
    all           2       1     1              1            0
    """
    rows = result.rows
    total = AssetComparison(
        "all",
        *(sum(getattr(r, f) for r in rows) for f in _COUNTS),
    )
    width = max([len("asset"), *(len(r.asset_id) for r in rows)])
    head = f"{'asset':<{width}}  champion  shadow  both  only champion  only shadow"
    lines = [
        f"champion version {', '.join(result.champion_versions) or '-'}, "
        f"shadow version {', '.join(result.shadow_versions) or '-'}",
        head,
    ]
    for r in [*rows, total]:
        lines.append(
            f"{r.asset_id:<{width}}  {r.champion:>8}  {r.shadow:>6}  {r.both:>4}  "
            f"{r.only_champion:>13}  {r.only_shadow:>11}"
        )
    return "\n".join(lines)


_COUNTS = ("champion", "shadow", "both", "only_champion", "only_shadow")
