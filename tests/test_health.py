"""The operator surface: /healthz, /readyz and /metrics, in memory and on a running service."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import orjson
import pytest
from helpers import committed, fresh, read_all, serve_process, wait_for
from prometheus_client.parser import text_string_to_metric_families
from proxy import BehindProxy, Proxy

from sensorwatch.pipeline.dev.tansu import free_port
from sensorwatch.pipeline.errors import UserError
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.health import Endpoints, Health
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.service.metrics import ServiceMetrics
from sensorwatch.pipeline.settings import Settings


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.read().decode()
    except urllib.error.URLError as exc:  # nothing listens (yet)
        return 0, str(exc.reason)


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample /metrics shows, by name and labels."""
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_is_the_loop_going_round() -> None:
    clock = Clock()
    health = Health(
        Settings(bootstrap_servers="b:9092", max_poll_interval_ms=10_000, broker_timeout_s=20),
        clock,
    )
    assert health.live() == (True, {"status": "starting"})  # loading the model is alive
    health.beat()
    clock.now += 59
    assert health.live()[0]
    clock.now += 2  # 10 s of poll interval + 20 s of broker wait + 30 s of slack have passed
    ok, body = health.live()
    assert not ok and body["status"] == "stuck"
    health.beat()
    assert health.live()[0]
    health.stopped()
    assert not health.live()[0]


def test_readiness_needs_a_model_partitions_and_the_broker() -> None:
    clock, looks = Clock(), []
    answers = {"down": "b:9092: connection refused", "up": None}
    state = {"broker": "down"}

    def unreachable(servers: str, timeout_s: float) -> str | None:
        looks.append(servers)
        return answers[state["broker"]]

    health = Health(Settings(bootstrap_servers="b:9092"), clock, unreachable)
    ok, body = health.ready()
    assert not ok
    assert body["reasons"] == [
        "no model loaded yet",
        "no partitions assigned",
        "broker unreachable: b:9092: connection refused",
    ]
    health.model_version = "3"
    health.partitions = lambda: {("readings", 1), ("readings", 0)}
    state["broker"] = "up"
    assert not health.ready()[0]  # the broker was looked at less than a second ago
    clock.now += 1
    ok, body = health.ready()
    assert ok and body == {
        "status": "ready",
        "reasons": [],
        "model_version": "3",
        "partitions": [0, 1],
    }
    assert looks == ["b:9092", "b:9092"]


def test_endpoints_answer_on_their_port_and_a_taken_port_is_a_clear_error() -> None:
    metrics = ServiceMetrics()
    health = Health(Settings(bootstrap_servers=""))
    metrics.records.inc(7)
    endpoints = Endpoints(free_port(), metrics, health, host="127.0.0.1")
    try:
        status, body = get(endpoints.port, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "starting"}
        status, body = get(endpoints.port, "/readyz")
        assert status == 503 and "no bootstrap servers" in " ".join(json.loads(body)["reasons"])
        assert samples(endpoints.port)[("sensorwatch_records_total", ())] == 7
        assert get(endpoints.port, "/nothing")[0] == 404
        with pytest.raises(UserError, match=f"metrics_port {endpoints.port}: cannot listen there"):
            Endpoints(endpoints.port, metrics, health, host="127.0.0.1")
    finally:
        endpoints.close()


@pytest.mark.integration
def test_metrics_count_a_known_stream_and_readiness_follows_the_broker(
    service_settings, champion, champion_detector, tmp_path
) -> None:
    """Through a proxy that can cut the broker: metrics equal what the stream holds (records, dead
    letters by kind as the dead-letter topic has them, windows, lag 0); /readyz flips with the broker."""
    proxy_port = free_port()
    broker = BehindProxy(proxy_port, log_dir=tmp_path, timeout_s=30)
    broker.port = free_port()
    proxy = Proxy(broker.port, proxy_port).mend()
    port = free_port()
    with broker:
        base = service_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{proxy_port}"})
        settings = fresh(base).model_copy(
            update={"metrics_port": port, "grace_s": 0.0, "broker_timeout_s": 60.0}
        )
        channels = champion.detector_spec.channels
        t0 = int(time.time() * 1000) - 600_000
        assets, per_asset = ["p1", "p2", "p3"], 50
        send = kafka.producer(settings)
        for asset in assets:
            for i in range(per_asset):
                doc = {
                    "asset_id": asset,
                    "ts": t0 + i * 1000,
                    "values": {c: 1.0 + 0.01 * i for c in channels},
                }
                send.send(settings.readings_topic, key=asset.encode(), value=orjson.dumps(doc))
        send.flush()
        bad = [
            b"not json",
            b"",
            b'{"asset_id": "p1", "ts": 1}',
            orjson.dumps(
                {"asset_id": "p1", "ts": t0 + 3_000, "values": {c: 1.0 for c in channels}}
            ),
        ]  # duplicate
        for raw in bad:
            send.send(settings.readings_topic, key=b"p1", value=raw)
        send.close()
        total = len(assets) * per_asset + len(bad)

        service = Service.on_kafka(settings, champion_detector)
        stop = threading.Event()
        runner = threading.Thread(target=service.run, args=(stop,))
        runner.start()
        try:
            assert wait_for(lambda: get(port, "/readyz")[0] == 200, 60), get(port, "/readyz")
            assert wait_for(lambda: committed(settings) >= total, 90)
            dead_kinds = Counter(
                dict(r.headers)["kind"].decode()
                for r in read_all(settings, settings.dlq_topic, expect=len(bad))
            )
            assert sum(dead_kinds.values()) == len(bad)

            def lag_is_zero() -> bool:
                lags = {
                    k: v for k, v in samples(port).items() if k[0] == "sensorwatch_consumer_lag"
                }
                return bool(lags) and all(v == 0 for v in lags.values())

            assert wait_for(lag_is_zero, 30), {
                k: v for k, v in samples(port).items() if "lag" in k[0]
            }
            seen = samples(port)
            assert seen[("sensorwatch_records_total", ())] == total
            assert seen[("sensorwatch_readings_scored_total", ())] == len(assets) * per_asset
            for kind, count in dead_kinds.items():
                assert seen[("sensorwatch_records_rejected_total", (("kind", kind),))] == count
            # Stride 1, no gaps: each asset's first window - 1 readings end no window.
            window = champion.detector_spec.recipe.window
            assert seen[("sensorwatch_windows_scored_total", ())] == len(assets) * (
                per_asset - window + 1
            )
            assert seen[("sensorwatch_model_version", ())] == float(champion.version.version)
            assert seen[("sensorwatch_state_assets", ())] == len(assets)
            assert seen[("sensorwatch_ready", ())] == 1
            assert seen[("sensorwatch_batch_seconds_count", ())] >= 1

            proxy.cut()  # the broker is gone: alive, not ready
            assert wait_for(lambda: get(port, "/readyz")[0] == 503, 20)
            assert "broker unreachable" in get(port, "/readyz")[1]
            assert get(port, "/healthz")[0] == 200
            proxy.mend()
            assert wait_for(lambda: get(port, "/readyz")[0] == 200, 60), get(port, "/readyz")
        finally:
            stop.set()
            runner.join(60)
            proxy.cut()
    assert not runner.is_alive()
    with pytest.raises(OSError):  # the endpoints close with the service
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.integration
def test_serve_answers_health_while_loading_and_names_what_it_serves(
    service_settings, champion, tmp_path
) -> None:
    """``sensorwatch serve`` with the endpoints on, logging JSON for a log shipper: /healthz
    answers 200 while the model loads and /readyz does not yet, then both do."""
    settings = fresh(service_settings)
    port = free_port()
    proc = serve_process(
        settings, champion.store.tracking_uri, tmp_path, metrics_port=str(port), log_format="json"
    )
    log = tmp_path / "serve.log"
    seen: list[tuple[int, int]] = []  # (/healthz, /readyz) from the moment the process starts

    def ready() -> bool:
        seen.append((get(port, "/healthz")[0], get(port, "/readyz")[0]))
        return seen[-1][1] == 200

    try:
        assert wait_for(ready, 90, every_s=0.05), (get(port, "/readyz"), log.read_text())
        assert (200, 503) in seen, Counter(seen)  # alive, not ready: loading
        assert seen[-1] == (200, 200)
        assert samples(port)[("sensorwatch_model_version", ())] == float(champion.version.version)
    finally:
        proc.terminate()
        proc.wait(60)
    said = log.read_text().splitlines()  # its stdout and stderr
    assert proc.returncode == 0, said
    assert said[-1].startswith("stopped: ")  # the summary is output, not a log record
    records = [json.loads(line) for line in said[:-1]]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    line = next(r["message"] for r in records if r["message"].startswith("champion version="))
    for part in (
        f"version={champion.version.version}",
        f"broker={settings.bootstrap_servers}",
        f"group={settings.group_id}",
        f"port={port}",
    ):
        assert part in line, line


def test_a_champion_the_service_cannot_serve_is_not_ready_and_counted(
    champion, champion_detector
) -> None:
    """The alias moves to a version that reads another cadence, which a running service cannot
    swap in: it keeps scoring with the version it has, but says so on /readyz and in the metrics,
    until the alias names a version it can serve again."""
    from dataclasses import replace

    from test_service_memory import ListSource

    from sensorwatch.models.register import log_training
    from sensorwatch.models.registry import set_alias

    store = replace(champion.store, model_name="unservable")
    first = log_training(champion.trained, store, alias="champion")
    slower = replace(champion.trained.spec, interval_ms=champion.trained.spec.interval_ms * 2)
    second = log_training(replace(champion.trained, spec=slower), store)
    assert first.version == champion_detector.version
    health = Health(Settings(bootstrap_servers="b:9092"), broker_unreachable=lambda s, t: None)
    service = Service(
        Settings(reload_interval_s=3600),
        champion_detector,
        ListSource([], [], threading.Event()),
        [],
        store,
        health=health,
    )
    try:
        assert health.ready()[0] and service.metrics.value("sensorwatch_champion_unusable") == 0
        set_alias(store, second.version)
        assert service.reloader.maybe_swap(service.processor, force=True) is None
        ok, body = health.ready()
        [reason] = body["reasons"]
        assert not ok and reason.startswith(f"champion version {second.version} cannot be served (")
        assert "interval_ms" in reason and reason.endswith(
            f"; still serving version {first.version}"
        )
        assert service.metrics.value("sensorwatch_champion_unusable") == 1
        assert service.metrics.value("sensorwatch_ready") == 0
        assert service.processor.detector.version == first.version
        set_alias(store, first.version)  # rolled back: served again
        service.reloader.maybe_swap(service.processor, force=True)
        assert health.ready()[0] and service.metrics.value("sensorwatch_champion_unusable") == 0
    finally:
        service.reloader.close()
