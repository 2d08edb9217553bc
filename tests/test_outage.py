"""Broker outages for real: none at start, and one cut in the middle of a stream (through a proxy)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import committed, wait_for
from proxy import BehindProxy, Proxy

from sensorwatch.pipeline.dev.replay import produce_frame
from sensorwatch.pipeline.dev.tansu import free_port
from sensorwatch.pipeline.kafka import clients as kafka
from sensorwatch.pipeline.service.loop import Service

pytestmark = pytest.mark.integration


def test_no_broker_at_start_is_one_line_and_a_non_zero_exit(champion, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SENSORWATCH_TRACKING_URI": champion.store.tracking_uri,
        "SENSORWATCH_BROKER_TIMEOUT_S": "3",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorwatch.pipeline.cli",
            "serve",
            "-b",
            f"127.0.0.1:{free_port()}",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) == 1
        and "no Kafka broker reachable at 127.0.0.1:" in errors[0]
        and "connection refused" in errors[0]
    )
    assert (
        sum("Kafka broker unreachable" in line for line in (done.stdout + done.stderr).splitlines())
        == 1
    )  # said once


def ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The service's own log lines: kafka-python's are left out, as one of them may name a
    connection object that can no longer say its own name once its socket has closed."""
    return [r.getMessage() for r in list(caplog.records) if r.name.startswith("sensorwatch")]


def test_a_broker_lost_mid_stream_is_waited_out_and_nothing_is_lost(
    service_settings,
    champion_detector,
    plant_after_training,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_port = free_port()
    broker = BehindProxy(proxy_port, log_dir=tmp_path, timeout_s=30)
    broker.port = free_port()
    proxy = Proxy(broker.port, proxy_port).mend()
    with broker:
        settings = service_settings.model_copy(
            update={"bootstrap_servers": f"127.0.0.1:{proxy_port}", "broker_timeout_s": 60.0}
        )
        kafka.ensure_topics(settings, kafka.service_topics(settings), partitions=2)
        sim, _ = plant_after_training()
        frame = sim.normal(400)
        frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
        first, second = frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]
        service = Service.on_kafka(settings, champion_detector)
        stop = threading.Event()
        runner = threading.Thread(target=service.run, args=(stop,))
        with caplog.at_level(logging.WARNING, logger="sensorwatch.pipeline"):
            runner.start()
            sent = produce_frame(settings, first, progress=False)
            assert wait_for(lambda: committed(settings) >= sent, 90)
            proxy.cut()  # the broker is gone for the service
            assert wait_for(  # noticed between polls
                lambda: any("unreachable" in m for m in ours(caplog)), 60
            )
            proxy.mend()
            sent += produce_frame(settings, second, progress=False)
            assert wait_for(lambda: committed(settings) >= sent, 120)
            stop.set()
            runner.join(60)
        proxy.cut()
    said = ours(caplog)
    assert any("unreachable" in m for m in said) and any("reachable again" in m for m in said), said
    assert service.stats.scored == sent and service.stats.rejected == 0
