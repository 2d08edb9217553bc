"""``sensorwatch review``: the anomalies the service logged to MLflow, their verdicts, and what the
verdicts teach the threshold."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from sensorwatch.pipeline.cli.logs import setup_logging
from sensorwatch.pipeline.cli.options import Tracking, settings_from

app = typer.Typer(
    no_args_is_help=True,
    help="Review flagged anomalies: list, show, label; tune the threshold from verdicts.",
)

Verdict = Literal["confirmed", "false-positive", "investigate"]
Ref = Annotated[
    str,
    typer.Argument(
        help="The anomaly: its id as `review list` shows it (or all of it), or its MLflow run id."
    ),
]


def _reviews(tracking_uri: str | None):
    settings = settings_from(tracking_uri=tracking_uri)
    from sensorwatch.pipeline.review.feedback import reviews_of

    return settings, reviews_of(settings)


@app.command("list")
def list_(
    day: Annotated[str | None, typer.Option(help="Only this UTC day (YYYY-MM-DD).")] = None,
    asset: Annotated[str | None, typer.Option(help="Only this asset.")] = None,
    version: Annotated[
        str | None, typer.Option(help="Only anomalies this model version flagged.")
    ] = None,
    verdict: Annotated[
        Literal["unreviewed", "confirmed", "false-positive", "investigate"] | None,
        typer.Option(help="Only this verdict."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most anomalies to show, newest first.")] = 50,
    tracking_uri: Tracking = None,
) -> None:
    """Anomalies by day, asset, model version and verdict, newest first."""
    _check_filters(day, version)
    from rich.console import Console
    from rich.table import Table

    from sensorwatch.pipeline.review.verdicts import summary

    _, reviews = _reviews(tracking_uri)
    found = reviews.list(day, asset, version, verdict, limit)
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # a pipe or a file: whole rows, not rows folded to 80 columns
        console = Console(highlight=False, soft_wrap=True, width=220)
    if not found:
        console.print(
            "no anomalies" + (" match" if any((day, asset, version, verdict)) else " logged yet")
        )
        return
    rows = [summary(a) for a in found]
    table = Table(box=None, pad_edge=False)
    for column in rows[0]:
        table.add_column(column, no_wrap=column in ("id", "start", "day"))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    link = reviews.queue_url(verdict, day, asset, version)
    console.print(f"{len(found)} shown; open them in MLflow: {link}")


def _check_filters(day: str | None, version: str | None) -> None:
    """A filter that can match nothing is a mistake, not an empty answer."""
    from datetime import date

    from sensorwatch.pipeline.errors import UserError

    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise UserError(f"day: not a day YYYY-MM-DD: {day!r}") from None
    if version is not None and not version.isdigit():
        raise UserError(f"version: a model version number, got {version!r}")


@app.command()
def show(ref: Ref, tracking_uri: Tracking = None) -> None:
    """One anomaly: its figures, top channels, plot, link in MLflow's UI and verdict history."""
    from sensorwatch.pipeline.review.verdicts import details

    _, reviews = _reviews(tracking_uri)
    a = reviews.find(ref)
    typer.echo(details(a, reviews.url(a)))


@app.command()
def label(
    ref: Ref,
    verdict: Annotated[Verdict, typer.Argument(help="confirmed, false-positive or investigate.")],
    note: Annotated[str, typer.Option(help="Why, kept with the verdict.")] = "",
    by: Annotated[
        str | None, typer.Option(help="Who (default: the user running the command).")
    ] = None,
    tracking_uri: Tracking = None,
) -> None:
    """Set an anomaly's verdict (as setting its `verdict` tag in MLflow's UI does), keeping the change."""
    from sensorwatch.pipeline.jobs.retrain import person

    _, reviews = _reviews(tracking_uri)
    who = by or person()
    before = reviews.find(ref)
    a = reviews.label(before.run_id, verdict, who, note)
    if before.verdict == a.verdict:  # no change, no history line
        kept = "; the note is kept" if note else ""
        typer.echo(f"{a.event_id[:8]} {a.asset} {a.start}: already {a.verdict}{kept}")
    else:
        typer.echo(
            f"{a.event_id[:8]} {a.asset} {a.start}: {before.verdict} → {a.verdict} (by {who})"
        )


@app.command()
def tune(
    apply: Annotated[
        bool,
        typer.Option(
            help="Set the scale on the champion version (running services take it at their next reload check)."
        ),
    ] = False,
    tracking_uri: Tracking = None,
) -> None:
    """The threshold scale the champion's reviewed anomalies call for: logged to MLflow with its evidence."""
    settings = settings_from(tracking_uri=tracking_uri)
    from sensorwatch.pipeline.jobs.retrain import person
    from sensorwatch.pipeline.review.feedback import tune as run

    setup_logging(False)
    done = run(settings, apply=apply, by=person())
    t = done.tuning
    typer.echo(f"version {done.version}: {t.why}")
    if t.changed:
        typer.echo(
            "applied to the version: services take it at their next reload check"
            if done.applied
            else "not applied: run again with --apply to set it on the version"
        )
    typer.echo(f"evidence: MLflow run {done.run_id} in experiment {settings.review_experiment!r}")
