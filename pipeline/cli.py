"""The ``sensorwatch`` command line: one sub-command per job, flags override the settings."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from pipeline.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Streaming anomaly detection for sensor readings on Kafka, with models in MLflow.",
)
evaluate_app = typer.Typer(no_args_is_help=True, help="Detection quality on public benchmarks.")
app.add_typer(evaluate_app, name="evaluate")

Servers = Annotated[str | None, typer.Option("--bootstrap-servers", "-b", help="Kafka bootstrap servers (default: embedded broker).")]
Tracking = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    from pydantic import ValidationError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        raise UserError(f"{field.replace('_', '-')}: {err['msg']}") from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    import mlflow  # noqa: F401  (it sets its loggers' levels when imported: set ours after it)

    for noisy in ("kafka", "mlflow", "alembic", "absl", "tensorflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if not verbose else logging.WARNING)


@app.command()
def broker(
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
    verbose: Verbose = False,
) -> None:
    """Run the embedded Kafka-compatible broker in the foreground, with the service's topics."""
    from pipeline.broker import serve_broker

    _logging(verbose)
    serve_broker(settings_from(), port)


@app.command()
def simulate(
    assets: Annotated[int, typer.Option(min=1, help="Simulated assets.")] = 8,
    readings: Annotated[int, typer.Option(min=1, help="Readings per asset.")] = 2000,
    faults: Annotated[int, typer.Option(min=0, help="Injected faults per asset.")] = 2,
    rate: Annotated[float | None, typer.Option(min=0.001, help="Readings per second (default: as fast as possible).")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Write the injected faults to this CSV.")] = None,
    bootstrap_servers: Servers = None,
    verbose: Verbose = False,
) -> None:
    """Stream simulated pump readings, with labelled injected faults, to the readings topic."""
    import pandas as pd

    from pipeline.replay import produce_frame
    from pipeline.simulator import Simulator

    _logging(verbose)
    settings = _need_servers(settings_from(bootstrap_servers=bootstrap_servers, seed=seed))
    sim = Simulator(assets=assets, seed=settings.seed, start_ms=int(time.time() * 1000) - readings * 1000)
    try:
        frame, injected = sim.with_faults(readings, faults_per_asset=faults)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if labels:
        pd.DataFrame([f.__dict__ for f in injected]).to_csv(labels, index=False)
    sent = produce_frame(settings, frame, rate, progress=True)
    typer.echo(f"sent {sent} readings of {assets} assets with {len(injected)} injected faults to {settings.readings_topic}")


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="CSV files (SKAB `;` format or plain CSV with a time column).")],
    rate: Annotated[float | None, typer.Option(min=0.001, help="Readings per second (default: as fast as possible).")] = None,
    asset_id: Annotated[str | None, typer.Option(help="Asset id for every file (default: from each file's name).")] = None,
    bootstrap_servers: Servers = None,
    verbose: Verbose = False,
) -> None:
    """Replay CSV files into the readings topic in event-time order."""
    from pipeline.replay import replay_csv

    _logging(verbose)
    settings = _need_servers(settings_from(bootstrap_servers=bootstrap_servers))
    sent = replay_csv(settings, files, rate, asset_id)
    typer.echo(f"sent {sent} readings from {len(files)} file(s) to {settings.readings_topic}")


@app.command()
def train(
    files: Annotated[list[Path] | None, typer.Argument(help="CSV files of normal operation (default: the simulator).")] = None,
    rows: Annotated[int | None, typer.Option(min=1, help="Use only the first ROWS rows of each file.")] = None,
    assets: Annotated[int, typer.Option(min=1, help="Simulated assets, when training on the simulator.")] = 8,
    readings: Annotated[int, typer.Option(min=100, help="Readings per simulated asset.")] = 1500,
    promote: Annotated[bool, typer.Option(help="Point the champion alias at the new version.")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Most epochs.")] = None,
    window: Annotated[int | None, typer.Option(help="Window length.")] = None,
    threshold: Annotated[str | None, typer.Option(help="Threshold method.")] = None,
    mixed_precision: Annotated[bool | None, typer.Option(help="float16 compute on GPUs.")] = None,
    tracking_uri: Tracking = None,
    verbose: Verbose = False,
) -> None:
    """Train the LSTM autoencoder, log the run to MLflow and register a model version."""
    from pipeline.train import csv_series, simulator_series, train_and_register

    _logging(verbose)
    settings = settings_from(
        epochs=epochs, window=window, threshold_method=threshold, mixed_precision=mixed_precision, tracking_uri=tracking_uri
    )
    if files:
        series, channels = csv_series(files, rows)
        source = ",".join(str(f) for f in files)
    else:
        series, channels = simulator_series(settings, assets, readings)
        source = f"simulator:{assets}x{readings}"
    trained, version = train_and_register(settings, series, channels, source, promote)
    alias = f", alias {settings.model_alias}" if promote else ""
    typer.echo(
        f"registered {version.name} version {version.version}{alias} "
        f"(run {version.run_id}, {len(trained.history['loss'])} epochs, loss {trained.history['loss'][-1]:.4f})"
    )


@app.command()
def serve(
    bootstrap_servers: Servers = None,
    group_id: Annotated[str | None, typer.Option(help="Consumer group.")] = None,
    tracking_uri: Tracking = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus metrics port (0: off).")] = None,
) -> None:
    """Run the scoring service: one replica of the consumer group, loading the champion model."""
    from models.registry import load_detector
    from pipeline.service import Service, stop_on_signals
    from pipeline.train import store_of

    _logging(verbose=True)
    settings = _need_servers(
        settings_from(bootstrap_servers=bootstrap_servers, group_id=group_id, tracking_uri=tracking_uri, metrics_port=metrics_port)
    )
    detector = load_detector(store_of(settings), settings.model_alias)
    stop = threading.Event()
    stop_on_signals(stop)
    stats = Service(settings, detector, store_of(settings)).run(stop)
    typer.echo(
        f"stopped: {stats.records} records, {stats.scored} scored, {stats.rejected} dead-lettered, "
        f"{stats.windows} windows, {stats.anomalies} anomalies"
    )


@app.command()
def demo(
    assets: Annotated[int, typer.Option(min=1, help="Simulated assets.")] = 8,
    readings: Annotated[int, typer.Option(min=200, help="Readings per asset streamed through Kafka.")] = 2500,
    verbose: Verbose = False,
) -> None:
    """Everything on embedded defaults: broker, training, MLflow registry, service, faults, summary."""
    from pipeline.demo import run_demo

    _logging(verbose)
    run_demo(settings_from(), assets=assets, readings=readings)


@app.command()
def detect(
    file: Annotated[Path, typer.Argument(help="CSV file: SKAB `;` format or plain CSV with a time column.")],
    out: Annotated[Path, typer.Option(help="Where to write `datetime, score, anomaly` for the rows after training.")],
    train_rows: Annotated[int, typer.Option(min=1, help="Leading rows that train the model, scaler and threshold.")] = 400,
    threshold: Annotated[str | None, typer.Option(help="Threshold method (default: the benchmark-chosen one).")] = None,
) -> None:
    """Score one CSV causally through the service's own path (each decision uses only earlier rows)."""
    from pipeline.detect import DetectConfig, detect_file
    from pipeline.skab import CHOSEN, METHOD_PARAMS

    _logging(False)
    overrides = {**CHOSEN, "reuse_model": False, "progress": True}
    if threshold:
        if threshold not in METHOD_PARAMS:
            raise UserError(f"threshold: unknown method {threshold!r}; choose from {', '.join(METHOD_PARAMS)}")
        overrides.update(threshold=threshold, threshold_params=METHOD_PARAMS[threshold])
    result = detect_file(file, train_rows, DetectConfig().with_(**overrides))
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    typer.echo(f"wrote {len(result)} rows to {out}: {int(result['anomaly'].sum())} flagged anomalous")


@evaluate_app.command("skab")
def evaluate_skab_command(
    out: Annotated[Path, typer.Option(help="Folder for the predictions (same relative paths as the data).")],
    data: Annotated[Path | None, typer.Option(help="SKAB data folder (default: the skab_dir setting).")] = None,
    methods: Annotated[str | None, typer.Option(help="Threshold methods to compare, comma-separated (default: the chosen one).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes scoring files side by side.")] = 2,
) -> None:
    """The SKAB protocol on every file: F1, FAR, MAR and NAB beside the published leaderboard."""
    from pipeline.skab import METHOD_PARAMS, evaluate_skab, format_report

    _logging(False)
    chosen = [m.strip() for m in methods.split(",")] if methods else None
    unknown = [m for m in chosen or [] if m not in METHOD_PARAMS]
    if unknown:
        raise UserError(f"methods: unknown {', '.join(unknown)}; choose from {', '.join(METHOD_PARAMS)}")
    report = evaluate_skab(data or settings_from().skab_dir, out, methods=chosen, workers=workers)
    typer.echo(format_report(report))


def _need_servers(settings: Settings) -> Settings:
    if not settings.bootstrap_servers:
        raise UserError("no Kafka to talk to: pass --bootstrap-servers or set SENSORWATCH_BOOTSTRAP_SERVERS (`sensorwatch broker` starts one)")
    return settings


def main() -> None:
    """Entry point: known problems become one line on stderr and exit status 2, never a traceback."""
    from pipeline.csvsource import SourceError

    known: tuple[type[BaseException], ...] = (UserError, SourceError, LookupError, FileNotFoundError, PermissionError)
    from pipeline.broker import BrokerError
    from pipeline.replay import SendError

    known += (BrokerError, SendError)
    try:
        status = app(standalone_mode=False)
    except TyperException as exc:  # a bad option or argument: what is wrong, on one line
        message = " ".join(exc.format_message().split())
        typer.secho(f"error: {message} (see --help)", err=True, fg="red")
        sys.exit(exc.exit_code)
    except known as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
