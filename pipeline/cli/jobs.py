"""The jobs of the command line: train, serve, detect and evaluate, all with the same recipe options."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from sensorwatch.pipeline.cli.options import (
    Servers,
    TimeUnit,
    Tracking,
    Verbose,
    job_settings,
    need_servers,
    recipe_options,
    setup_logging,
)
from sensorwatch.pipeline.errors import UserError

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.registry import Store
    from sensorwatch.pipeline.settings import Settings

T = TypeVar("T")
log = logging.getLogger("sensorwatch.pipeline")


@recipe_options
def train(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="CSV files of normal operation (default: the simulator)."),
    ] = None,
    rows: Annotated[
        int | None, typer.Option(min=1, help="Use only the first ROWS rows of each file.")
    ] = None,
    assets: Annotated[
        int, typer.Option(min=1, help="Simulated assets, when training on the simulator.")
    ] = 8,
    readings: Annotated[int, typer.Option(min=100, help="Readings per simulated asset.")] = 1500,
    promote: Annotated[
        bool, typer.Option(help="Point the champion alias at the new version.")
    ] = False,
    mixed_precision: Annotated[bool | None, typer.Option(help="float16 compute on GPUs.")] = None,
    time_unit: TimeUnit = None,
    tracking_uri: Tracking = None,
    verbose: Verbose = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Train the LSTM autoencoder with the recipe, log the run to MLflow and register a model version."""
    # Settings are checked before the heavy imports, so a bad one is refused at once.
    settings = job_settings(
        mixed_precision=mixed_precision, tracking_uri=tracking_uri, **(recipe or {})
    )
    from sensorwatch.models.cadence import TrainingDataError
    from sensorwatch.models.registry import check_store
    from sensorwatch.pipeline.dev.simulator import normal_series
    from sensorwatch.pipeline.jobs.train import csv_series, train_and_register
    from sensorwatch.pipeline.stores import store_of

    check_store(
        store_of(settings), writing=True
    )  # a URI that points nowhere is refused before training
    setup_logging(verbose)
    if files:
        series, channels = csv_series(files, rows, time_unit)
        source = ",".join(str(f) for f in files)
    else:
        series, channels = normal_series(assets, readings, settings.seed)
        source = f"simulator:{assets}x{readings}"
    try:
        trained, version = train_and_register(settings, series, channels, source, promote)
    except TrainingDataError as exc:
        raise UserError(f"{source}: {exc}") from None
    alias = f", alias {settings.model_alias}" if promote else ""
    typer.echo(
        f"registered {version.name} version {version.version}{alias} "
        f"(run {version.run_id}, {len(trained.history['loss'])} epochs, loss {trained.history['loss'][-1]:.4f}, "
        f"{len(channels)} channel(s), one reading every {trained.spec.interval_ms / 1000:.4g} s)"
    )


class _HeldBack(logging.Filter):
    """Holds back what other threads than the main one log (the group join, the Kafka clients'
    I/O) until ``release``: then it is logged in order, with its own times, or dropped. A start-up
    that fails says why in one line, not between the join's news."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.handlers = list(logging.getLogger().handlers)
        for handler in self.handlers:
            handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != "MainThread":
            self.records.append(record)
            return False
        return True

    def release(self, log_them: bool, ours_only: bool = False) -> None:
        for handler in self.handlers:
            handler.removeFilter(self)
        for record in self.records if log_them else ():
            if not ours_only or record.name.startswith("sensorwatch"):
                logging.getLogger(record.name).handle(record)
        self.records = []


def _in_background(fn: Callable[..., T], *args: object) -> Future[T]:
    """``fn(*args)`` on a daemon thread: a process that gives up meanwhile does not wait for it."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name=f"sensorwatch-{fn.__name__}", daemon=True).start()
    return future


def _champion(settings: Settings) -> tuple[Detector, Store]:
    """The champion, from MLflow or its local copy, compiled (what was compiled before is kept in
    the cache folder and loaded, not compiled again)."""
    from sensorwatch.models.library_env import keep_compiled

    keep_compiled(
        settings.cache_dir / "compiled"
    )  # before Keras is imported: TensorFlow reads it then
    from sensorwatch.models.cache import load_champion
    from sensorwatch.pipeline.stores import cache_of, store_of

    store = store_of(settings)
    return load_champion(store, settings.model_alias, cache_of(settings)).warm_up(), store


@recipe_options
def serve(
    bootstrap_servers: Servers = None,
    group_id: Annotated[str | None, typer.Option(help="Consumer group.")] = None,
    tracking_uri: Tracking = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /healthz, /readyz and /metrics (0: off).")
    ] = None,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Run the scoring service: one replica of the consumer group, deciding by the champion's recipe.

    Recipe options given here override the version's decision rules (stride, alarm and cadence
    rules); its model fields are fixed by training.
    """
    settings = need_servers(
        job_settings(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            tracking_uri=tracking_uri,
            metrics_port=metrics_port,
            **(recipe or {}),
        )
    )
    from sensorwatch.pipeline.service.connect import connect
    from sensorwatch.pipeline.service.health import Endpoints, Health
    from sensorwatch.pipeline.service.loop import Service
    from sensorwatch.pipeline.service.metrics import ServiceMetrics
    from sensorwatch.pipeline.service.signals import stop_on_signals

    setup_logging(verbose=True)
    stop = threading.Event()
    stop_on_signals(
        stop
    )  # a stop asked for while the model loads ends the service before its first poll
    # /healthz answers while the model loads (alive, not ready): an orchestrator waits, not restarts.
    metrics, health = ServiceMetrics(), Health(settings)
    endpoints = Endpoints(settings.metrics_port, metrics, health) if settings.metrics_port else None
    # The group is joined on a thread while the model loads and compiles: start-up pays for the
    # longer of the two, not both.
    held = _HeldBack()  # the join's news follows the model's, or is dropped with it
    joining = _in_background(connect, settings, settings.session_timeout_ms / 1000)
    began = time.perf_counter()
    try:
        detector, store = _champion(settings)
    except BaseException:
        held.release(log_them=False)
        if endpoints is not None:
            endpoints.close()
        joining.add_done_callback(lambda f: f.exception() is None and f.result().close())
        raise
    # A join that already failed (refused login, bad certificate) is told in its own one line,
    # after what the service said meanwhile (not the Kafka client's own noise).
    failed = joining.done() and joining.exception() is not None
    held.release(log_them=True, ours_only=failed)
    loaded_s = time.perf_counter() - began
    connection = joining.result()
    log.info(
        "champion version=%s model=%s loaded and compiled in %.1f s; serving broker=%s group=%s topic=%s port=%s",
        detector.version,
        settings.model_name,
        loaded_s,
        settings.bootstrap_servers,
        settings.group_id,
        settings.readings_topic,
        endpoints.port if endpoints else "off",
    )
    service = Service.on_kafka(
        settings, detector, store, connection, metrics=metrics, health=health, endpoints=endpoints
    )
    stats = service.run(stop)
    typer.echo(
        f"stopped: {stats.records} records, {stats.scored} scored, {stats.rejected} dead-lettered, "
        f"{stats.windows} windows, {stats.anomalies} anomalies"
    )


@recipe_options
def detect(
    file: Annotated[
        Path, typer.Argument(help="CSV file: SKAB `;` format or plain CSV with a time column.")
    ],
    out: Annotated[
        Path,
        typer.Option(help="Where to write `datetime, score, anomaly` for the rows after training."),
    ],
    train_rows: Annotated[
        int, typer.Option(min=1, help="Leading rows that train the model, scaler and threshold.")
    ] = 400,
    time_unit: TimeUnit = None,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Score one CSV causally through the service's own path (each decision uses only earlier rows)."""
    from sensorwatch.pipeline.data.csvfiles import read_sensor_csv

    settings = job_settings(**(recipe or {}))
    if out.is_dir():
        raise UserError(f"{out}: is a directory; --out takes the name of the CSV file to write")
    frame = read_sensor_csv(file, time_unit=time_unit)
    # Keras comes with these: only once the settings and the file are known to be good.
    from sensorwatch.pipeline.jobs.detect import detect_frame

    setup_logging(False)
    result = detect_frame(frame, train_rows, settings.recipe(), settings.train_options())
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    typer.echo(
        f"wrote {len(result)} rows to {out}: {int(result['anomaly'].sum())} flagged anomalous"
    )


@recipe_options
def evaluate_skab(
    out: Annotated[
        Path, typer.Option(help="Folder for the predictions (same relative paths as the data).")
    ],
    data: Annotated[
        Path | None, typer.Option(help="SKAB data folder (default: the skab_dir setting).")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Threshold methods to compare, comma-separated (default: the recipe's)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes scoring files side by side.")] = 2,
    recipe: dict[str, Any] | None = None,
) -> None:
    """The SKAB protocol on every file: F1, FAR, MAR and NAB beside the published leaderboard."""
    settings = job_settings(**(recipe or {}))
    from sensorwatch.pipeline.jobs.skab import METHOD_PARAMS, format_report
    from sensorwatch.pipeline.jobs.skab import evaluate_skab as run

    setup_logging(False)
    chosen = [m.strip() for m in methods.split(",")] if methods else None
    unknown = [m for m in chosen or [] if m not in METHOD_PARAMS]
    if unknown:
        raise UserError(
            f"methods: unknown {', '.join(unknown)}; choose from {', '.join(METHOD_PARAMS)}"
        )
    report = run(
        data or settings.skab_dir,
        out,
        settings.recipe(),
        methods=chosen,
        workers=workers,
        compiled=settings.cache_dir / "compiled",
        options=settings.train_options(),
    )
    typer.echo(format_report(report))
