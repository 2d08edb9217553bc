"""The development commands: an embedded broker, simulated pumps, CSV replay, and the demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sensorwatch.pipeline.cli.logs import setup_logging
from sensorwatch.pipeline.cli.options import (
    Servers,
    Strict,
    TimeUnit,
    TimeZone,
    Verbose,
    need_servers,
    settings_from,
)
from sensorwatch.pipeline.errors import UserError


def broker(
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: a free one).")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run the embedded Kafka-compatible broker in the foreground, with the service's topics."""
    from sensorwatch.pipeline.dev.broker import serve_broker

    setup_logging(verbose)
    serve_broker(settings_from(), port)


def simulate(
    assets: Annotated[int, typer.Option(min=1, help="Simulated assets.")] = 8,
    readings: Annotated[int, typer.Option(min=1, help="Readings per asset.")] = 2000,
    faults: Annotated[int, typer.Option(min=0, help="Injected faults per asset.")] = 2,
    rate: Annotated[
        float | None,
        typer.Option(min=0.001, help="Readings per second (default: as fast as possible)."),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.001, help="Seconds between two readings of a pump.")
    ] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Write the injected faults to this CSV.")
    ] = None,
    bootstrap_servers: Servers = None,
    verbose: Verbose = False,
) -> None:
    """Stream simulated pump readings, with labelled injected faults, to the readings topic."""
    import pandas as pd

    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.dev.simulator import Simulator

    setup_logging(verbose)
    settings = need_servers(settings_from(bootstrap_servers=bootstrap_servers, seed=seed))
    start_ms = int(time.time() * 1000) - int(readings * interval * 1000)
    sim = Simulator(assets=assets, seed=settings.seed, interval_s=interval, start_ms=start_ms)
    try:
        frame, injected = sim.with_faults(readings, faults_per_asset=faults)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if labels:
        pd.DataFrame([f.__dict__ for f in injected]).to_csv(labels, index=False)
    sent = produce_frame(settings, frame, rate, progress=True)
    typer.echo(
        f"sent {sent} readings of {assets} assets with {len(injected)} injected faults to {settings.readings_topic}"
    )


def replay(
    files: Annotated[
        list[Path],
        typer.Argument(help="CSV files (SKAB `;` format or plain CSV with a time column)."),
    ],
    rate: Annotated[
        float | None,
        typer.Option(min=0.001, help="Readings per second (default: as fast as possible)."),
    ] = None,
    asset_id: Annotated[
        str | None, typer.Option(help="Asset id for every file (default: from each file's name).")
    ] = None,
    time_unit: TimeUnit = None,
    timezone: TimeZone = None,
    strict: Strict = False,
    bootstrap_servers: Servers = None,
    verbose: Verbose = False,
) -> None:
    """Replay CSV files into the readings topic in event-time order (a repeated time once)."""
    from sensorwatch.pipeline.dev.replay import replay_csv

    setup_logging(verbose)
    settings = need_servers(settings_from(bootstrap_servers=bootstrap_servers))
    sent = replay_csv(
        settings,
        files,
        rate,
        asset_id,
        time_unit=time_unit,
        timezone=timezone,
        strict=strict,
        say=lambda line: typer.echo(line, err=True),
    )
    typer.echo(f"sent {sent} readings from {len(files)} file(s) to {settings.readings_topic}")


def demo(
    assets: Annotated[int, typer.Option(min=1, help="Simulated assets.")] = 8,
    readings: Annotated[
        int, typer.Option(min=200, help="Readings per asset streamed through Kafka.")
    ] = 2500,
    verbose: Verbose = False,
) -> None:
    """Everything on embedded defaults: broker, training, MLflow registry, service, faults, summary."""
    from sensorwatch.pipeline.dev.demo import run_demo

    setup_logging(verbose)
    run_demo(settings_from(), assets=assets, readings=readings)
