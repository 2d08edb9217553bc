"""The jobs of the command line: train, serve, detect and evaluate, all with the same recipe options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sensorwatch.pipeline.cli.logs import setup_logging
from sensorwatch.pipeline.cli.options import (
    RetrainEvery,
    Servers,
    Strict,
    TimeUnit,
    TimeZone,
    Tracking,
    Verbose,
    job_settings,
    need_servers,
    recipe_options,
)
from sensorwatch.pipeline.errors import UserError

# The rows ``detect`` trains on unless told: about a day and a half at 5 minutes, 7 hours at one a
# minute; a shorter file trains on its first half.
TRAIN_ROWS = 400


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
    timezone: TimeZone = None,
    strict: Strict = False,
    tracking_uri: Tracking = None,
    verbose: Verbose = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Train the LSTM autoencoder with the recipe, log the run to MLflow and register a model version."""
    # Settings are checked before the heavy imports, so a bad one is refused at once.
    settings = job_settings(
        mixed_precision=mixed_precision, tracking_uri=tracking_uri, **(recipe or {})
    )
    from sensorwatch.models.cadence import TrainingDataError, training_stretches
    from sensorwatch.models.mlflow_store import check_store
    from sensorwatch.pipeline.dev.simulator import normal_series
    from sensorwatch.pipeline.jobs.train import csv_series, train_and_register
    from sensorwatch.pipeline.stores import store_of

    # The data and the store are checked before Keras is imported (train_and_register does).
    if files:
        series, channels = csv_series(files, rows, time_unit, timezone, strict, say=_note)
        source = ",".join(str(f) for f in files)
    else:
        series, channels = normal_series(assets, readings, settings.seed)
        source = f"simulator:{assets}x{readings}"
    try:
        training_stretches(series, settings.recipe())
    except TrainingDataError as exc:
        raise UserError(f"{source}: {exc}") from None
    check_store(store_of(settings), writing=True)  # a URI that points nowhere is refused here
    setup_logging(verbose)
    try:
        trained, version = train_and_register(settings, series, channels, source, promote)
    except TrainingDataError as exc:
        raise UserError(f"{source}: {exc}") from None
    alias = f", alias {settings.model_alias}" if promote else ""
    typer.echo(
        f"registered {version.name} version {version.version}{alias} "
        f"(run {version.run_id}, {len(trained.history['loss'])} epochs, loss {trained.history['loss'][-1]:.4f}, "
        f"{len(channels)} channel(s), one reading every {trained.spec.interval_ms / 1000:.4g} s, "
        f"process {trained.recipe.process}{_share(trained.spec.level_share)})"
    )


def _share(share: float | None) -> str:
    """The level share a process choice was made on, as the training output says it."""
    return "" if share is None else f": level share {share:.2f}"


@recipe_options
def serve(
    bootstrap_servers: Servers = None,
    group_id: Annotated[str | None, typer.Option(help="Consumer group.")] = None,
    tracking_uri: Tracking = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /healthz, /readyz and /metrics (0: off).")
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Score in shadow: the model @challenger, group <group>.shadow, events to "
            "<anomalies topic>.shadow (alerting no one), no archive or review; see "
            "`sensorwatch compare`.",
        ),
    ] = False,
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
    if shadow:
        from sensorwatch.pipeline.jobs.shadow import shadow_settings

        settings = shadow_settings(settings)
    from sensorwatch.pipeline.service.startup import serve as run

    setup_logging(verbose=True)
    stats = run(settings)
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
        int | None,
        typer.Option(
            min=1,
            help=f"Leading rows that train the model, scaler and threshold (default: {TRAIN_ROWS}, "
            f"or half the rows of a file with fewer than {2 * TRAIN_ROWS}).",
            show_default=False,
        ),
    ] = None,
    retrain_every: RetrainEvery = 0,
    time_unit: TimeUnit = None,
    timezone: TimeZone = None,
    strict: Strict = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Score one CSV causally through the service's own path (each decision uses only earlier rows).

    Rows are sorted by time and a repeated time is kept once (the first), said in one line;
    ``--strict`` refuses such a file instead."""
    from sensorwatch.pipeline.data.csvfiles import read_sensor_csv

    settings = job_settings(**(recipe or {}))
    if out.is_dir():
        raise UserError(f"{out}: is a directory; --out takes the name of the CSV file to write")
    frame = read_sensor_csv(file, time_unit=time_unit, timezone=timezone, strict=strict)
    if frame.note:
        _note(frame.note)
    told = train_rows is not None
    train_rows = train_rows or (min(TRAIN_ROWS, len(frame) // 2) or 1)
    from sensorwatch.pipeline.jobs.detect import check_windows_form, detect_frame

    check_windows_form(frame, train_rows, settings.recipe())  # before Keras is imported
    if not told and train_rows < TRAIN_ROWS:
        _note(f"{file}: {len(frame)} rows: the first {train_rows} train (--train-rows)")
    setup_logging(False)
    result = detect_frame(
        frame,
        train_rows,
        settings.recipe(),
        settings.train_options(),
        retrain_every,
        settings.retrain_leave_out_windows,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    typer.echo(
        f"wrote {len(result)} rows to {out}: {int(result['anomaly'].sum())} flagged anomalous"
    )


def _note(line: str) -> None:
    """What reading a file put right (sorted, repeated times dropped): one line on stderr."""
    typer.echo(line, err=True)


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
    runtime: Annotated[
        str,
        typer.Option(
            help="Score with the Keras model (keras), or its exported graph in ONNX Runtime as "
            "serve does (onnx): both decide the same."
        ),
    ] = "keras",
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
    if runtime not in ("keras", "onnx"):
        raise UserError(f"runtime: {runtime!r} is neither keras nor onnx")
    report = run(
        data or settings.skab_dir,
        out,
        settings.recipe(),
        methods=chosen,
        workers=workers,
        compiled=settings.cache_dir / "compiled",
        options=settings.train_options(),
        runtime=runtime,
    )
    typer.echo(format_report(report))


@recipe_options
def evaluate_smd(
    out: Annotated[Path, typer.Option(help="Folder for the predictions (one CSV per machine).")],
    data: Annotated[
        Path | None, typer.Option(help="SMD data folder (default: the smd_dir setting).")
    ] = None,
    machines: Annotated[
        str | None, typer.Option(help="Machines to run, comma-separated (default: all).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes scoring machines side by side.")
    ] = 2,
    retrain_every: RetrainEvery = 0,
    recipe: dict[str, Any] | None = None,
) -> None:
    """The SMD protocol on every machine: point-wise F1 (no point adjustment), event recall and
    false alarms, beside a PCA and an Isolation Forest baseline under the same protocol."""
    settings = job_settings(**(recipe or {}))
    from sensorwatch.pipeline.jobs.smd import evaluate_smd as run
    from sensorwatch.pipeline.jobs.smd import format_smd

    setup_logging(False)
    report = run(
        data or settings.smd_dir,
        out,
        settings.recipe(),
        machines=[m.strip() for m in machines.split(",")] if machines else None,
        workers=workers,
        compiled=settings.cache_dir / "compiled",
        options=settings.train_options(),
        retrain_every=retrain_every,
    )
    typer.echo(format_smd(report))
