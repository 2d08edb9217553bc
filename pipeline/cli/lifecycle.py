"""The model's life after training: retrain on the archive, promote or roll back, check for drift,
compare a shadow challenger's alarms with the champion's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from sensorwatch.pipeline.cli.logs import setup_logging
from sensorwatch.pipeline.cli.options import (
    Servers,
    Tracking,
    Verbose,
    need_servers,
    settings_from,
)
from sensorwatch.pipeline.errors import UserError


def promote(
    version: Annotated[
        str, typer.Argument(help="The model version to make champion (an older one rolls back).")
    ],
    reason: Annotated[str, typer.Option(help="Why, recorded on the version.")] = "promoted by hand",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote a version whose channels, window or cadence differ from the champion's "
            "(running services cannot swap it in: restart or redeploy them).",
        ),
    ] = False,
    tracking_uri: Tracking = None,
) -> None:
    """Point the champion alias at VERSION, recording who, when and why on the version.

    A version that reads readings otherwise than the champion (channels, window, cadence) is
    refused unless --force."""
    settings = settings_from(tracking_uri=tracking_uri)
    from mlflow.exceptions import MlflowException

    from sensorwatch.pipeline.jobs.retrain import person
    from sensorwatch.pipeline.jobs.retrain import promote as run

    if not version.isdigit():
        raise UserError(f"version: a version number, got {version!r}")
    setup_logging(False)
    try:
        run(settings, version, by=person(), why=reason, force=force)
    except MlflowException as exc:
        raise UserError(
            f"version {version} of {settings.model_name!r}: {str(exc).splitlines()[0]}"
        ) from None
    typer.echo(f"{settings.model_name} version {version} is now @{settings.model_alias} ({reason})")


def retrain(
    date: Annotated[
        str | None, typer.Option(help="Logical date YYYY-MM-DD (default: today, UTC).")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Train the challenger with this preset (and the recipe fields set in the "
            "settings) instead of the champion's own recipe: a recipe change, recorded on its run.",
        ),
    ] = None,
    tracking_uri: Tracking = None,
    verbose: Verbose = False,
) -> None:
    """What the retraining DAG does, in one go: validate, train (with the champion's recipe),
    evaluate (the gate: injected faults, labels, reviewed verdicts), promote."""
    settings = settings_from(tracking_uri=tracking_uri)
    day = date or datetime.now(UTC).date().isoformat()
    try:
        datetime.fromisoformat(day)
    except ValueError:
        raise UserError(f"date: not YYYY-MM-DD: {day!r}") from None
    from sensorwatch.models.presets import PRESETS

    if preset is not None and preset not in PRESETS:
        raise UserError(f"preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    from sensorwatch.pipeline.jobs import gate
    from sensorwatch.pipeline.jobs import retrain as steps

    setup_logging(verbose)
    report = steps.validate(settings, day)
    typer.echo(report.summary())
    version = steps.train(settings, day, preset=preset)
    verdict = gate.evaluate(settings, day, version)
    promoted = steps.promote(settings, version, verdict)
    typer.echo(f"version {version}: {verdict['why']}; {'promoted' if promoted else 'not promoted'}")
    if not promoted:
        typer.echo(
            f"version {version} is @challenger: `sensorwatch serve --shadow` scores it on the live "
            "stream beside the champion, alerting no one; `sensorwatch compare` shows both"
        )


def drift(tracking_uri: Tracking = None) -> None:
    """Whether the recent window scores left the champion's validation scores: exit 0 no drift,
    1 drift, 2 could not tell (no champion, too few scores, no archive, MLflow out of reach)."""
    settings = settings_from(tracking_uri=tracking_uri)
    from sensorwatch.pipeline.jobs.drift import drift as check

    found = check(settings)
    said = {0: "no drift: ", 1: "drift: ", 2: "could not tell: "}[found.exit_code] + found.why
    typer.echo(said, err=found.exit_code == 2)
    raise typer.Exit(found.exit_code)


def compare(
    since: Annotated[
        str | None,
        typer.Option(help="Alarms that started at or after this time (ISO, UTC if no offset)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Alarms that started before this time (ISO, UTC if no offset)."),
    ] = None,
    bootstrap_servers: Servers = None,
) -> None:
    """Champion against shadow alarms over the same period, per asset: the alarms each raised,
    both raised (overlapping in time), only the champion raised and only the shadow raised; read
    from the anomalies topic and the shadow's (`sensorwatch serve --shadow`)."""
    settings = need_servers(settings_from(bootstrap_servers=bootstrap_servers))
    since_ms, until_ms = _instant("since", since), _instant("until", until)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise UserError(f"until: {until} is not after --since {since}")
    from sensorwatch.pipeline.jobs.shadow import compare_topics, format_comparison
    from sensorwatch.pipeline.kafka.reach import wait_for_broker

    setup_logging(False)
    wait_for_broker(settings.bootstrap_servers, settings.broker_timeout_s)
    try:
        result = compare_topics(settings, since_ms, until_ms)
    except LookupError as exc:
        raise UserError(str(exc)) from None
    typer.echo(format_comparison(result))


def _instant(name: str, text: str | None) -> int | None:
    """``text`` (an ISO date or time; UTC unless it says otherwise) in epoch milliseconds."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{name}: not an ISO date or time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
