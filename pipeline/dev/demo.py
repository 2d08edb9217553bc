"""``sensorwatch demo``: the whole path on embedded defaults, with a summary scored against the
faults the simulator injected."""

from __future__ import annotations

import contextlib
import threading
import time

from rich.console import Console

from sensorwatch.pipeline.dev.broker import EmbeddedBroker
from sensorwatch.pipeline.dev.demo_training import (
    DAY_MS,
    DAY_PIECE,
    DAY_PIECES,
    TRAIN_READINGS,
    demo_settings,
    training_series,
)
from sensorwatch.pipeline.dev.matching import Match, fault_of
from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.simulator import CHANNELS, Fault, Simulator
from sensorwatch.pipeline.jobs.train import train_and_register
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.service.startup import start_service
from sensorwatch.pipeline.settings import Settings
from sensorwatch.schemas.events import decode_event
from sensorwatch.schemas.records import AnomalyEvent


def _show(console: Console, e: AnomalyEvent, faults: list[Fault], tolerance_ms: int) -> None:
    top = sorted(e.contributions.items(), key=lambda kv: -kv[1])[:2]
    hit = fault_of(e, faults, tolerance_ms)
    verdict = f"[green]injected {faults[hit].kind}[/]" if hit is not None else "[red]false alarm[/]"
    console.print(
        f"  [bold]{e.asset_id}[/] {e.window_start[11:19]}–{e.window_end[11:19]} "
        f"score {e.score:7.2f} > {e.threshold:5.2f}  "
        + ", ".join(f"{c} {v:.0%}" for c, v in top)
        + f"  {verdict}"
    )


def run_demo(settings: Settings, assets: int = 8, readings: int = 2500) -> None:
    console = Console(highlight=False, soft_wrap=True)
    settings = demo_settings(settings)
    wall = time.perf_counter()
    # From midnight UTC, a day or more ago: all in the past (so no reading is "from the future"), and the
    # simulator's daily cycle at the same phase on every run, so the demo's figures repeat.
    days_back = 2 + (TRAIN_READINGS + readings) * 1000 // DAY_MS  # a day of stretches first
    sim_start = (int(time.time() * 1000) // DAY_MS - days_back) * DAY_MS
    sim = Simulator(assets=assets, seed=settings.seed, start_ms=sim_start)
    embedded = (
        None
        if settings.bootstrap_servers
        else EmbeddedBroker(kafka.service_topics(settings), settings=settings)
    )
    with embedded or contextlib.nullcontext():
        settings = (embedded.settings if embedded else settings).model_copy(
            update={
                "max_poll_interval_ms": 10_000,
                "session_timeout_ms": 6000,
                "reload_interval_s": 0,
            }
        )
        servers = settings.bootstrap_servers
        kafka.ensure_topics(settings, kafka.service_topics(settings))
        where = "embedded broker" if embedded else "Kafka"
        console.print(f"[bold]1/5[/] {where} on {servers}; MLflow store {settings.tracking_uri}")

        series = training_series(sim)
        console.print(
            f"[bold]2/5[/] training on {sum(len(s) for s in series)} normal readings of {assets} "
            f"simulated pumps: {DAY_PIECES} stretches over a day, then {TRAIN_READINGS} each "
            f"(recipe: preset {settings.preset}, README 'Recipes and cadence')"
        )
        t0 = time.perf_counter()
        trained, version = train_and_register(
            settings,
            series,
            list(CHANNELS),
            f"simulator:{assets}x({DAY_PIECES}x{DAY_PIECE}+{TRAIN_READINGS})",
            promote=True,
        )
        train_s = time.perf_counter() - t0
        share = trained.spec.level_share
        console.print(
            f"      {len(trained.history['loss'])} epochs in {train_s:.0f} s; registered {version.name} "
            f"version {version.version} as @{settings.model_alias}; process {trained.recipe.process}"
            + (f" (level share {share:.2f})" if share is not None else "")
        )

        frame, faults = sim.with_faults(readings, faults_per_asset=2)
        service = start_service(settings)  # as `sensorwatch serve` starts it
        detector = service.processor.detector
        stop = threading.Event()
        failure: list[BaseException] = []
        runner = threading.Thread(
            target=_run_service, args=(service, stop, failure), name="service", daemon=True
        )
        runner.start()
        console.print(
            f"[bold]3/5[/] streaming {len(frame)} readings with {len(faults)} injected faults through Kafka "
            f"(model @{settings.model_alias} = version {detector.version})"
        )
        t_stream = time.perf_counter()
        sent = produce_frame(settings, frame, None, progress=False)
        events = _watch(console, settings, service, sent, stop, runner, faults)
        if failure:
            raise RuntimeError(f"the scoring service failed: {failure[0]!r}") from failure[0]
        stream_s = time.perf_counter() - t_stream

    _summary(
        console,
        settings,
        service,
        events,
        faults,
        sent,
        stream_s,
        train_s,
        time.perf_counter() - wall,
    )
    _review(console, settings, service, events, faults)


def _tolerance_ms(service: Service) -> int:
    """How long after a fault a window still holds its readings: one window's span."""
    spec = service.processor.detector.spec
    return spec.window * spec.interval_ms


def _run_service(service: Service, stop: threading.Event, failure: list[BaseException]) -> None:
    try:
        service.run(stop)
    except BaseException as exc:  # handed to the main thread, which reports it and exits non-zero
        failure.append(exc)
        stop.set()


def _watch(console, settings, service, sent, stop, runner, faults) -> list[AnomalyEvent]:
    """Print alarms from the topic as they open, until the service has taken every reading (an alarm's
    cleared event, with the same id, closes it and is not counted again)."""
    tolerance = _tolerance_ms(service)
    events: list[AnomalyEvent] = []
    reader = kafka.consumer(settings, settings.anomalies_topic, standalone=True)

    def read(timeout_ms: int) -> None:
        for records in reader.poll(timeout_ms).values():
            for rec in records:
                event = decode_event(rec.value)
                if event.kind == "opened":
                    events.append(event)
                    _show(console, event, faults, tolerance)

    # Stop once every reading is scored and the review queue has reached MLflow (the worker logs
    # off the scoring path, so it may still be plotting the last alarms).
    sink = _review_sink(service)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            read(300)
            done = service.stats.records >= sent and (sink is None or sink.pending == 0)
            if done and not stop.is_set():
                stop.set()
            if stop.is_set() and not runner.is_alive():
                break
        runner.join(timeout=30)
        read(1000)  # events of the final flush
    finally:
        reader.close()
    return events


def _summary(console, settings, service, events, faults, sent, stream_s, train_s, wall_s) -> None:
    s = service.stats
    match = Match.of(events, faults, _tolerance_ms(service))
    recall = len(match.detected) / max(len(faults), 1)
    precision = (len(events) - len(match.false_alarms)) / max(len(events), 1)
    per_10k = len(match.false_alarms) / max(sent, 1) * 10_000
    missed = sorted({faults[j].kind for j in range(len(faults)) if j not in match.detected})
    console.print("[bold]4/5[/] summary")
    console.print(
        f"      readings {s.records}  scored {s.scored}  dead-lettered {s.rejected}  windows {s.windows}"
    )
    console.print(
        f"      anomaly events {len(events)}  faults injected {len(faults)}  detected {len(match.detected)}"
        f"  false alarms {len(match.false_alarms)}"
    )
    console.print(
        f"      recall {recall:.0%} of fault events  precision {precision:.0%}  "
        f"false alarms per 10,000 readings {per_10k:.2f}"
        + (f"  (missed: {', '.join(missed)})" if missed else "")
    )
    console.print(
        f"      scoring {s.scored / max(s.busy_s, 1e-9):,.0f} readings/s of service time, "
        f"{s.records / max(stream_s, 1e-9):,.0f} readings/s end to end; training {train_s:.0f} s, demo {wall_s:.0f} s"
    )


def _review_sink(service: Service):
    from sensorwatch.pipeline.review.sink import ReviewSink

    return next((s for s in service.checkpoint.sinks if isinstance(s, ReviewSink)), None)


def _review(console, settings, service, events, faults) -> None:
    """Where the anomalies are waiting for review, and how to give one a verdict."""
    from sensorwatch.pipeline.review.feedback import reviews_of

    sink = _review_sink(service)
    if sink is None:
        return
    reviews = reviews_of(settings)
    console.print(
        f"[bold]5/5[/] review: {sink.logged} anomaly events logged to MLflow experiment {settings.review_experiment!r}"
        + (f" ({sink.dropped} not logged: see the log)" if sink.dropped else "")
    )
    uri = settings.tracking_uri
    console.print(f"      open the review queue:  [bold]mlflow ui --backend-store-uri {uri}[/]")
    console.print(f"                              then {reviews.queue_url()}")
    tolerance = _tolerance_ms(service)
    sample = next(
        (e for e in events if fault_of(e, faults, tolerance) is not None),
        events[0] if events else None,
    )
    ref = sample.event_id[:8] if sample else "<id>"
    console.print("      list them:              [bold]sensorwatch review list[/]")
    console.print(
        f'      label one:              [bold]sensorwatch review label {ref} confirmed --note "bearing noise"[/]'
        "  (or set its 'verdict' tag in the UI)"
    )
    console.print(
        "      let verdicts tune it:   [bold]sensorwatch review tune[/]  "
        "(retraining also leaves confirmed anomalies out)"
    )
