"""The ``sensorwatch`` command line: one sub-command per job, flags override the settings.

Importing it loads no Keras or TensorFlow: each command imports what it needs when it runs.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from sensorwatch.models.cache import RegistryUnreachable
from sensorwatch.models.cadence import TrainingDataError
from sensorwatch.models.integrity import IntegrityError
from sensorwatch.models.mlflow_store import StoreError
from sensorwatch.models.registry import NoChampionError
from sensorwatch.pipeline.cli import dev, jobs, lifecycle, reset, review, settings_cmd
from sensorwatch.pipeline.cli.options import log_format_option
from sensorwatch.pipeline.errors import BrokerError, SendError, SourceError, UserError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Streaming anomaly detection for sensor readings on Kafka, with models in MLflow.",
)
evaluate_app = typer.Typer(no_args_is_help=True, help="Detection quality on public benchmarks.")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(review.app, name="review")

# Every command takes --log-format; `settings` declares it itself, as one of the settings it shows.
for command in (
    dev.demo,
    dev.broker,
    jobs.train,
    jobs.serve,
    dev.simulate,
    dev.replay,
    jobs.detect,
    lifecycle.retrain,
    lifecycle.promote,
    lifecycle.drift,
    reset.reset,
    lifecycle.compare,
):
    app.command()(log_format_option(command))
evaluate_app.command("skab")(log_format_option(jobs.evaluate_skab))
evaluate_app.command("smd")(log_format_option(jobs.evaluate_smd))
for registered in review.app.registered_commands:
    registered.callback = log_format_option(registered.callback)
app.command()(settings_cmd.settings)


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"sensorwatch {version('sensorwatch')}")
        except PackageNotFoundError:  # the source tree on the path, not installed
            typer.echo("sensorwatch (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    pass  # the help is the app's own (above)


# Problems of input, settings or environment: one line on stderr and exit status 2.
KNOWN = (
    UserError,
    SourceError,
    BrokerError,
    SendError,
    NoChampionError,
    StoreError,
    IntegrityError,
    RegistryUnreachable,
    TrainingDataError,
    FileNotFoundError,
    PermissionError,
    ModuleNotFoundError,  # an extra not installed (Keras and TensorFlow: `train`)
)


def main() -> None:
    """Entry point: known problems become one line on stderr and exit status 2, never a traceback."""
    try:
        status = app(standalone_mode=False)
    except TyperException as exc:
        if (
            type(exc).__name__ == "NoArgsIsHelpError"
        ):  # a bare group asks for help (Typer too knows it by name)
            _show_help(exc)
            sys.exit(0)
        # a bad option or argument: what is wrong, on one line
        message = " ".join(exc.format_message().split())
        typer.secho(f"error: {message} (see --help)", err=True, fg="red")
        sys.exit(exc.exit_code)
    except KNOWN as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2)
    except Exception as exc:
        said = out_of_reach(exc)
        if said is None:
            raise
        typer.secho(f"error: {said}", err=True, fg="red")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


_UNREACHABLE = re.compile(
    r"API request to (\w+://[^/\s]+)\S* failed with (exception|error code) (.*)"
)


def out_of_reach(exc: BaseException) -> str | None:
    """One line for MLflow's tracking server out of reach (refused, timed out, failing), or None.

    >>> out_of_reach(RuntimeError("API request to http://h:9/api/2.0/x failed with exception "
    ...     "HTTPConnectionPool(host='h', port=9): Max retries exceeded (Caused by "
    ...     "NewConnectionError('...: [Errno 111] Connection refused'))"))
    'MLflow at http://h:9 is out of reach (Connection refused): start it or fix SENSORWATCH_TRACKING_URI'
    """
    found = _UNREACHABLE.search(str(exc))
    if found is None:
        return None
    url, detail = found.group(1), found.group(3)
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)|(Read timed out)|(\d{3}) != 200", detail)
    why = next((g for g in reason.groups() if g), "") if reason else ""
    why = f"error {why}" if why.isdigit() else why
    return (
        f"MLflow at {url} is out of reach{f' ({why})' if why else ''}: start it or fix "
        "SENSORWATCH_TRACKING_URI"
    )


def _show_help(exc: TyperException) -> None:
    """Typer's rich help is printed while the error is made, and its message is empty; plain help is the message."""
    text = exc.format_message()
    if text.strip():
        typer.echo(text)


if __name__ == "__main__":
    main()
