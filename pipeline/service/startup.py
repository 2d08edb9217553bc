"""Settings → a scoring service ready to run: the one place ``serve``, the demo and the tests start it.

Start-up goes in this order, each step failing in one line of its own before the next costs
anything:

1. ``/healthz``, ``/readyz`` and ``/metrics`` when a port is set: an orchestrator sees the replica
   alive (not ready) while the rest happens, and waits instead of restarting it;
2. the broker reached and the login tried, here and now (``check_broker``): a broker that is not
   there, a certificate that does not verify, TLS to a plaintext broker and a refused login fail
   before the model is loaded (each is quick to tell when the broker is up);
3. the consumer group joined on a thread while the champion is loaded and compiled: start-up pays
   for the longer of the two, not both. What that thread logs is held back until the model is in
   (``HeldBack``), so a failure is told in one line. The champion comes from its checked local
   copy when there is one for this runtime, without importing MLflow (``cache.start_champion``:
   a local store's alias is read from its file; a tracking server is asked right after start, on
   the reload thread, and its champion swapped in if it differs), else from MLflow;
4. the service put together on Kafka (``on_kafka``): the group's consumer as source, the
   dead-letter and anomaly topics as sinks, the state changelog, the archive and review sinks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from sensorwatch.pipeline.service.health import Endpoints, Health
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.service.metrics import ServiceMetrics
from sensorwatch.pipeline.settings import Settings

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.models.mlflow_store import Store
    from sensorwatch.pipeline.service.connect import Connection
    from sensorwatch.pipeline.service.report import Stats

T = TypeVar("T")
log = logging.getLogger("sensorwatch.pipeline")


def check_broker(settings: Settings) -> None:
    """The broker reached (waited for up to ``broker_timeout_s``) and, with TLS or SASL, one login
    tried; else ``BrokerError`` saying why, in one line."""
    from sensorwatch.pipeline.kafka import clients, reach

    reach.wait_for_broker(settings.bootstrap_servers, settings.broker_timeout_s)
    clients.security(settings)  # the login, once per settings: the clients made later skip it


def load_champion(settings: Settings) -> tuple[Detector, Store, str]:
    """The champion, from its local copy or MLflow, compiled (what was compiled before is kept in
    the cache folder and loaded, not compiled again), the store it came from, and where it came
    from ("copy", "unasked copy": MLflow has still to be asked whether it is the champion, or
    "mlflow")."""
    from sensorwatch.models.library_env import keep_compiled

    keep_compiled(settings.cache_dir / "compiled")  # before Keras is imported: TensorFlow reads it
    from sensorwatch.models.cache import start_champion
    from sensorwatch.pipeline.stores import cache_of, store_of

    store, cache = store_of(settings), cache_of(settings)
    detector, where = start_champion(store, settings.model_alias, cache)
    if where == "unasked copy":
        log.info(
            "serving %s; asking MLflow at %s whether it is still the champion",
            copy_of(detector, settings),
            store.tracking_uri,
        )
    return detector.warm_up(), store, where


def copy_of(detector: Detector, settings: Settings) -> str:
    from sensorwatch.pipeline.stores import cache_of

    return f"the local copy of version={detector.version} from {cache_of(settings).path}"


def on_kafka(
    settings: Settings,
    detector: Detector,
    store: Store | None = None,
    connection: Connection | None = None,
    **operator: Any,
) -> Service:
    """The service on Kafka: the group's consumer as source; the dead-letter and anomaly topics as
    sinks; the state changelog, restored on assignment; the archive and review sinks when set.
    ``connection`` is one ``connect`` made beforehand (the group joined while the model loaded);
    else one is made here. ``operator``: the metrics, health and endpoints, when made before."""
    from sensorwatch.pipeline.kafka import changelog
    from sensorwatch.pipeline.kafka.sinks import ChangelogSink, DeadLetterSink, EventSink
    from sensorwatch.pipeline.service.connect import connect

    connection = connection or connect(settings)
    source, producer, topic = connection.source, connection.producer, connection.changelog_topic
    sinks = [
        DeadLetterSink(producer, settings.dlq_topic),
        EventSink(producer, settings.anomalies_topic),
    ]
    service = Service(
        settings,
        detector,
        source,
        sinks,
        store,
        restore=lambda parts, processor: changelog.restore(settings, parts, processor),
        **operator,
    )
    service.checkpoint.state.append(
        ChangelogSink(producer, topic, service.processor, service.owners)
    )
    if settings.archive_uri:
        from sensorwatch.pipeline.archive import ArchiveSink

        service.checkpoint.sinks.append(ArchiveSink(settings.archive_uri, service.processor))
        service.processor.windower.keep_released = True
    if store is not None and settings.review_buffer > 0:
        from sensorwatch.pipeline.review.sink import ReviewSink

        service.checkpoint.sinks.append(
            ReviewSink(
                store,
                service.processor,
                experiment=settings.review_experiment,
                buffer=settings.review_buffer,
                drain_s=settings.review_drain_s,
                ui_url=settings.review_ui_url,
                metrics=service.metrics,
            )
        )
    source.on_revoke = service.forget  # the group calls it from inside a later poll
    return service


def start_service(
    settings: Settings, *, detector: Detector | None = None, store: Store | None = None
) -> Service:
    """The service the settings describe, its group joined, ready for ``service.run(stop)``.

    ``detector`` (with its ``store``, if any, for reloads and review): one loaded before, used
    instead of loading the champion. Whatever fails closes what was opened before it.
    """
    from sensorwatch.pipeline.kafka.changelog import changelog_topic
    from sensorwatch.pipeline.service.connect import connect

    changelog_topic(settings)  # a group id that makes no topic name: one line, before anything
    where = "given"  # where the champion came from: "copy", "unasked copy", "mlflow"
    metrics, health = ServiceMetrics(), Health(settings)
    endpoints = Endpoints(settings.metrics_port, metrics, health) if settings.metrics_port else None
    try:
        check_broker(settings)
        held = HeldBack()  # the join's news follows the model's, or is dropped with it
        began = time.perf_counter()
        joining = in_background(connect, settings, settings.session_timeout_ms / 1000)
        join_s: list[float] = []  # when the join ended (on its thread)
        joining.add_done_callback(lambda _: join_s.append(time.perf_counter() - began))
        try:
            if detector is None:
                detector, store, where = load_champion(settings)
            loaded = time.perf_counter() - began
        except BaseException:
            # The group left quietly: what its close logs (a leave the broker did not expect) is
            # dropped with the rest, so the failure stays the one line said.
            def close_quietly(joined: Future[Connection]) -> None:
                try:
                    if joined.exception() is None:
                        joined.result().close()
                finally:
                    held.release(log_them=False)

            joining.add_done_callback(close_quietly)
            raise
        # A join that failed meanwhile is told in its own one line, after what the service said
        # meanwhile (not the Kafka client's own noise).
        held.release(log_them=True, ours_only=joining.done() and joining.exception() is not None)
        connection = joining.result()
        join_s.append(time.perf_counter() - began)  # unless its callback said it first
    except BaseException:
        if endpoints is not None:
            endpoints.close()
        raise
    log.info(
        "champion version=%s model=%s runtime=%s from=%s loaded and compiled in %.2f s, group "
        "joined in %.2f s; serving broker=%s group=%s topic=%s port=%s",
        detector.version,
        settings.model_name,
        detector.runtime,
        where.replace(" ", "-"),
        loaded,
        join_s[0],
        settings.bootstrap_servers,
        settings.group_id,
        settings.readings_topic,
        endpoints.port if endpoints else "off",
    )
    service = on_kafka(
        settings, detector, store, connection, metrics=metrics, health=health, endpoints=endpoints
    )
    if where == "unasked copy":
        service.reloader.confirm(copy_of(detector, settings))
    return service


def serve(settings: Settings) -> Stats:
    """``sensorwatch serve``: start the service and run it until SIGTERM or Ctrl+C."""
    from sensorwatch.pipeline.service.signals import stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)  # a stop asked for while the model loads ends it before its first poll
    return start_service(settings).run(stop)


class HeldBack(logging.Filter):
    """Holds back what other threads than the main one log (the group join, the Kafka clients'
    I/O), and the Kafka clients' news from any thread, until ``release``: then it is logged in
    order, with its own times, or dropped. A start-up that fails says why in one line, not between
    the join's news."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.handlers = list(logging.getLogger().handlers)
        for handler in self.handlers:
            handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != "MainThread" or record.name.startswith("kafka"):
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


def in_background(fn: Callable[..., T], *args: object) -> Future[T]:
    """``fn(*args)`` on a daemon thread: a process that gives up meanwhile does not wait for it.
    ``in_background(service.run, stop)`` runs a started service beside the caller."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    name = getattr(fn, "__name__", "task")
    threading.Thread(target=run, name=f"sensorwatch-{name}", daemon=True).start()
    return future
