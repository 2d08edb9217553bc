"""The archive: what the service scored, as Parquet by day, written whole before the commit."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers import committed, fresh, wait_for
from test_processor import detector

from sensorwatch.pipeline.archive import DAY_MS, ArchiveSink, read_archive
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.pipeline.stream.records import Polled
from sensorwatch.pipeline.stream.step import drain, step
from sensorwatch.schemas.readings import Limits

LIMITS = Limits(max_bytes=65_536, max_future_ms=300_000)


def _polled(asset: str, ts: list[int], offset0: int = 0) -> list[Polled]:
    import orjson

    return [
        Polled(
            "r",
            0,
            offset0 + i,
            asset.encode(),
            orjson.dumps(
                {"asset_id": asset, "ts": t, "values": {"a": float(i), "b": 0.5, "c": -1.0}}
            ),
        )
        for i, t in enumerate(ts)
    ]


def _archived(tmp_path, polls) -> tuple[ArchiveSink, Processor]:
    processor = Processor(detector(1e9))
    processor.windower.keep_released = True
    sink = ArchiveSink(str(tmp_path), processor)
    for records in polls:
        sink.write(step(processor, records, LIMITS, now_ms=10**13))
    sink.write(drain(processor))
    sink.flush()
    return sink, processor


def test_every_windowed_reading_is_archived_by_day_with_its_window_score(tmp_path) -> None:
    midnight = 20_000 * DAY_MS
    ts = [
        midnight - 4 + i for i in range(8)
    ]  # four readings on each side of midnight (the model's cadence: 1 ms)
    sink, _ = _archived(
        tmp_path, [_polled("p1", ts[:5]), _polled("p1", ts[5:], 5), _polled("p2", ts, 100)]
    )
    days = sorted(p.name for p in (tmp_path / "readings").iterdir())
    assert days == [
        "day=2024-10-03",
        "day=2024-10-04",
    ]  # 20,000 days after 1970-01-01 is 2024-10-04
    assert not [p for p in tmp_path.rglob(".*")], "no staging file may stay behind"
    frames = read_archive(str(tmp_path))
    assert set(frames) == {"p1", "p2"} and sink.rows_written > 0
    p1 = frames["p1"]
    assert p1["ts_ms"].tolist() == ts
    assert p1["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0]
    scored = p1.dropna(subset=["score"])
    assert scored["ts_ms"].tolist() == ts[3:]  # window 4: each reading from the 4th on ends one
    assert set(scored["model_version"]) == {"3"} and not scored["anomalous"].any()
    only_after = read_archive(str(tmp_path), start_ms=midnight, end_ms=midnight + 2, assets={"p2"})
    assert list(only_after) == ["p2"] and only_after["p2"]["ts_ms"].tolist() == [
        midnight,
        midnight + 1,
    ]


def test_a_reading_archived_twice_is_read_once(tmp_path) -> None:
    ts = list(range(1, 7))
    _archived(tmp_path, [_polled("p1", ts)])
    _archived(tmp_path, [_polled("p1", ts)])  # a replay after a crash between archive and commit
    frames = read_archive(str(tmp_path))
    assert frames["p1"]["ts_ms"].tolist() == ts
    assert len(list((tmp_path / "readings").rglob("*.parquet"))) == 2


def test_rejected_late_and_duplicate_readings_are_not_archived(tmp_path) -> None:
    records = _polled("p1", [10, 11, 12, 13, 14]) + _polled(
        "p1", [12, 5], 5
    )  # a duplicate, a late one
    records.append(Polled("r", 0, 7, b"p1", b"{oops"))
    _archived(tmp_path, [records])
    assert read_archive(str(tmp_path))["p1"]["ts_ms"].tolist() == [10, 11, 12, 13, 14]


def test_nothing_archived_reads_as_nothing(tmp_path) -> None:
    assert read_archive(str(tmp_path / "none")) == {}


@pytest.mark.integration
def test_the_service_archives_every_reading_before_it_commits_with_a_commit_interval(
    service_settings, champion, champion_detector, plant_after_training, tmp_path
) -> None:
    from sensorwatch.pipeline.dev.replay import produce_frame
    from sensorwatch.pipeline.service.loop import Service

    settings = fresh(service_settings).model_copy(
        update={"archive_uri": str(tmp_path), "commit_interval_s": 1.0}
    )
    sim, _ = plant_after_training()
    frame = sim.normal(300)
    frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    service = Service.on_kafka(settings, champion_detector)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,))
    runner.start()
    try:
        sent = produce_frame(settings, frame, progress=False)
        assert wait_for(lambda: committed(settings) >= sent, 90)
        # Whatever is committed is archived, but for the readings still in their grace period.
        held = service.processor.windower.waiting()
        archived = sum(len(f) for f in read_archive(str(tmp_path)).values())
        assert archived >= sent - held
    finally:
        stop.set()
        runner.join(60)
    frames = read_archive(str(tmp_path))
    assert sum(len(f) for f in frames.values()) == sent == service.stats.scored
    for asset, part in frame.groupby("asset_id"):
        got = frames[asset]
        assert got["ts_ms"].tolist() == sorted(part["ts_ms"].tolist())
        assert np.allclose(
            got["flow"].to_numpy(), part.sort_values("ts_ms")["flow"].to_numpy(), rtol=1e-6
        )
    scores = sum(int(f["score"].notna().sum()) for f in frames.values())
    assert scores == service.stats.windows and {
        v for f in frames.values() for v in f["model_version"].dropna()
    } == {champion.version.version}


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """An S3 endpoint on loopback (moto's server, speaking the S3 protocol) with a bucket."""
    import subprocess
    import sys
    import urllib.request

    import pyarrow.fs as pafs

    from sensorwatch.pipeline.dev.tansu import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=open(tmp_path / "s3.log", "wb"),
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200
        except OSError:
            return False

    try:
        assert wait_for(up, 60, every_s=0.2), (tmp_path / "s3.log").read_text()
        for key, value in (
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ):
            monkeypatch.setenv(key, value)
        pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
        ).create_dir("plant")
        yield f"s3://plant/archive?endpoint_override=127.0.0.1:{port}&scheme=http"
    finally:
        server.kill()
        server.wait(10)


def test_the_archive_works_on_an_object_store_too(s3) -> None:
    processor = Processor(detector(1e9))
    processor.windower.keep_released = True
    sink = ArchiveSink(s3, processor)
    sink.write(step(processor, _polled("p1", list(range(1, 9))), LIMITS, now_ms=10**13))
    sink.write(drain(processor))
    sink.flush()
    frames = read_archive(s3)
    assert frames["p1"]["ts_ms"].tolist() == list(range(1, 9))
    assert frames["p1"]["score"].notna().sum() == 5
