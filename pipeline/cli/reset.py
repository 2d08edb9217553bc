"""``sensorwatch reset``: reprocess on purpose, a group's offsets and its state moved back together."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from sensorwatch.pipeline.cli.logs import setup_logging
from sensorwatch.pipeline.cli.options import Servers, need_servers, settings_from
from sensorwatch.pipeline.errors import UserError


def reset(
    group: Annotated[
        str, typer.Option("--group", help="The consumer group (deployment) to reset.")
    ],
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="Back to the oldest reading the topic keeps.")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            "--to-datetime",
            metavar="ISO",
            help="To the first reading produced at or after this time (ISO; UTC if no offset).",
        ),
    ] = None,
    bootstrap_servers: Servers = None,
) -> None:
    """Score the readings topic again from a point: the group's committed offsets moved there and
    its state (the group's changelog) cleared together. Refused while the group has members: stop
    its replicas first, start them again after."""
    if to_earliest == (to_datetime is not None):
        raise UserError("reset: give one of --to-earliest and --to-datetime ISO")
    when = None if to_datetime is None else _instant(to_datetime)
    settings = need_servers(settings_from(bootstrap_servers=bootstrap_servers))
    from sensorwatch.pipeline.jobs.reset import reset as run
    from sensorwatch.pipeline.kafka.changelog import changelog_topic
    from sensorwatch.pipeline.kafka.reach import wait_for_broker

    changelog_topic(settings.model_copy(update={"group_id": group}))  # a name Kafka takes
    setup_logging(False)
    wait_for_broker(settings.bootstrap_servers, settings.broker_timeout_s)
    typer.echo(run(settings, group, when).summary())


def _instant(text: str) -> datetime:
    """An ISO date or time; one without an offset is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"to-datetime: not an ISO date or time (e.g. 2026-12-07T09:00:00Z): {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
