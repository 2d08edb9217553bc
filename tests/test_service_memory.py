"""The service in memory: a list of records as its source, recording sinks, a real (untrained) model.

No broker here: these tests pin the loop's contract — every record scored or dead-lettered, sinks
flushed before the commit, nothing committed when a sink fails, grace-period readings scored on
the way out, and revoked partitions' assets forgotten.
"""

from __future__ import annotations

import functools
import threading

import orjson
import pytest
from helpers import RECIPE

from sensorwatch.models.autoencoder import build_autoencoder
from sensorwatch.models.detector import Detector
from sensorwatch.models.spec import DetectorSpec
from sensorwatch.pipeline.service.loop import Service
from sensorwatch.pipeline.settings import Settings
from sensorwatch.pipeline.stream.records import Partition, Polled
from sensorwatch.pipeline.stream.step import StepOutput

CHANNELS = ["a", "b"]
T0 = 1_700_000_000_000


class ListSource:
    """Hands out the given polls one by one, then nothing; records what was committed."""

    def __init__(
        self, polls: list[list[Polled]], journal: list[str], stop: threading.Event
    ) -> None:
        self.polls, self.journal, self.stop = list(polls), journal, stop
        self.assigned: set[Partition] = {("readings", 0), ("readings", 1)}
        self.assigned_new: set[Partition] = set()
        self.max_records = 2000
        self.committed: dict[Partition, int] = {}
        self.closed = False

    def poll(self, timeout_ms: int | None = None) -> list[Polled]:
        if not self.polls:
            self.stop.set()
            return []
        return self.polls.pop(0)

    def resume(self, partitions: set[Partition]) -> None:
        self.assigned_new -= partitions

    def commit(self, offsets: dict[Partition, int]) -> None:
        self.journal.append("commit")
        self.committed.update(offsets)

    def lag(self) -> dict[int, int]:
        return {}

    def close(self) -> None:
        self.closed = True


class RecordingSink:
    def __init__(self, name: str, journal: list[str], fail: bool = False) -> None:
        self.name, self.journal, self.fail = name, journal, fail
        self.written: list[StepOutput] = []

    def write(self, out: StepOutput) -> None:
        self.written.append(out)
        self.journal.append(f"write {self.name}")

    def flush(self) -> None:
        self.journal.append(f"flush {self.name}")
        if self.fail:
            raise ConnectionError(f"{self.name} is down")

    def close(self) -> None:
        self.journal.append(f"close {self.name}")


def detector(threshold: float) -> Detector:
    spec = DetectorSpec(
        CHANNELS,
        [0.0, 0.0],
        [1.0, 1.0],
        [1.0, 1.0],
        {"method": "reference", "value": threshold},
        recipe=RECIPE,
        interval_ms=1000,
    )
    return Detector(_model(), spec, version="1")


@functools.cache
def _model():
    """One untrained model for every detector here: its forward pass is compiled once (compiled
    passes are kept per model), whatever threshold a test gives it."""
    return build_autoencoder(RECIPE.window, 2, units=4)


def record(partition: int, offset: int, asset: str, i: int, value: float = 0.0) -> Polled:
    doc = {"asset_id": asset, "ts": T0 + i * 1000, "values": {"a": value, "b": -value}}
    return Polled("readings", partition, offset, asset.encode(), orjson.dumps(doc))


def run(polls: list[list[Polled]], threshold: float = 1e9, fail: bool = False):
    journal: list[str] = []
    stop = threading.Event()
    source = ListSource(polls, journal, stop)
    sinks = [RecordingSink("dlq", journal), RecordingSink("events", journal, fail)]
    service = Service(Settings(commit_interval_s=0), detector(threshold), source, sinks)
    return service, service.run(stop), source, sinks, journal


def test_every_record_is_scored_or_dead_lettered_and_committed_after_the_flush() -> None:
    good = [record(0, i, "p1", i) for i in range(10)]
    bad = [Polled("readings", 1, 0, b"p2", b"{oops"), Polled("readings", 1, 1, None, None)]
    duplicate = record(0, 10, "p1", 9)
    service, stats, source, (dlq, _), journal = run([good[:6] + bad, good[6:] + [duplicate]])

    assert stats.records == 13 and stats.scored == 10 and stats.rejected == 3
    reasons = [d.reason for out in dlq.written for d in out.dead_letters]
    assert [r.split(":")[0] for r in reasons] == ["malformed JSON", "empty message", "duplicate"]
    assert source.committed == {("readings", 0): 11, ("readings", 1): 2}
    # Each poll: every sink written, every sink flushed, and only then the commit.
    assert journal[:5] == ["write dlq", "write events", "flush dlq", "flush events", "commit"]
    assert source.closed and journal[-2:] == ["close dlq", "close events"]


def test_with_a_commit_interval_polls_are_written_at_once_and_checkpointed_together() -> None:
    from sensorwatch.pipeline.service.checkpoint import Checkpoint

    journal: list[str] = []
    now = [0.0]
    commits: list[dict] = []
    sinks, state = [RecordingSink("events", journal)], [RecordingSink("state", journal)]
    checkpoint = Checkpoint(
        sinks,
        lambda offsets: (journal.append("commit"), commits.append(offsets)),
        state,
        every_s=5.0,
        clock=lambda: now[0],
    )
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import step
    from sensorwatch.schemas.readings import Limits

    processor = Processor(detector(1e9))
    limits = Limits(max_bytes=65_536, max_future_ms=300_000)

    def poll(i: int) -> None:
        checkpoint(step(processor, [record(i % 2, i, "p1", i)], limits, now_ms=T0 * 2))

    poll(0)  # the first poll is checkpointed at once
    assert journal == ["write events", "write state", "flush events", "flush state", "commit"]
    assert commits == [{("readings", 0): 1}]
    del journal[:]
    for i in range(1, 4):  # three polls within 5 s: written, not flushed, not committed
        now[0] += 1.0
        poll(i)
    assert journal == ["write events", "write state"] * 3 and len(commits) == 1
    checkpoint.drop({("readings", 1)})  # partition 1 moved to another replica meanwhile
    now[0] += 2.5
    checkpoint.flush_if_due()
    assert journal[6:] == ["flush events", "flush state", "commit"]
    assert commits[1:] == [{("readings", 0): 3}]  # every poll's offsets but the revoked partition's
    checkpoint.flush_if_due()
    checkpoint.flush()
    assert len(commits) == 2  # nothing new: no empty checkpoint


class DetachingSink(RecordingSink):
    """A sink whose durable part runs on the checkpoint's worker: each part waits for ``go``."""

    def __init__(self, name: str, journal: list[str], go: threading.Event, fail: bool = False):
        super().__init__(name, journal, fail)
        self.go = go

    def detach(self):
        self.journal.append(f"detach {self.name}")

        def durable() -> None:
            assert self.go.wait(60)
            self.flush()

        return durable


def test_a_due_checkpoint_is_made_durable_off_the_poll_thread_and_committed_after() -> None:
    from sensorwatch.pipeline.service.checkpoint import Checkpoint
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import step
    from sensorwatch.schemas.readings import Limits

    journal: list[str] = []
    go = threading.Event()
    commits: list[dict] = []
    checkpoint = Checkpoint(
        [DetachingSink("events", journal, go)],
        lambda offsets: (journal.append("commit"), commits.append(dict(offsets))),
        [DetachingSink("state", journal, go)],
    )
    processor = Processor(detector(1e9))
    limits = Limits(max_bytes=65_536, max_future_ms=300_000)

    def poll(i: int) -> None:
        checkpoint(step(processor, [record(i % 2, i, "p1", i)], limits, now_ms=T0 * 2))

    poll(0)  # due at once: handed over, not yet durable, so not committed
    assert journal == ["write events", "write state", "detach events", "detach state"]
    assert not commits
    # Partition 0 moves to another replica meanwhile: the drop finishes the checkpoint in flight
    # (outputs, then state, then its offsets committed) while the partition is still ours, so
    # the next owner's state and offsets agree, as when the checkpoint ran on the poll thread.
    dropping = threading.Thread(target=checkpoint.drop, args=({("readings", 0)},))
    dropping.start()
    dropping.join(0.2)
    assert dropping.is_alive() and not commits  # it waits for the worker, held until `go`
    go.set()  # the worker makes it durable, outputs first
    dropping.join(60)
    assert journal[4:] == ["flush events", "flush state", "commit"]
    assert commits == [{("readings", 0): 1}]
    checkpoint.flush()  # nothing more was written: nothing more to make durable or commit
    assert len(commits) == 1
    poll(1)
    checkpoint.flush()  # everything since, to the commit, before it returns
    assert commits == [{("readings", 0): 1}, {("readings", 1): 2}]
    assert journal[-3:] == ["flush events", "flush state", "commit"]
    checkpoint.close()


def test_a_checkpoint_that_fails_off_the_poll_thread_stops_the_service_without_committing() -> None:
    from sensorwatch.pipeline.service.checkpoint import Checkpoint
    from sensorwatch.pipeline.stream.processor import Processor
    from sensorwatch.pipeline.stream.step import step
    from sensorwatch.schemas.readings import Limits

    journal: list[str] = []
    go = threading.Event()
    go.set()
    checkpoint = Checkpoint(
        [DetachingSink("events", journal, go, fail=True)],
        lambda offsets: journal.append("commit"),
        [DetachingSink("state", journal, go)],
    )
    processor = Processor(detector(1e9))
    limits = Limits(max_bytes=65_536, max_future_ms=300_000)
    checkpoint(step(processor, [record(0, 0, "p1", 0)], limits, now_ms=T0 * 2))
    with pytest.raises(ConnectionError, match="events is down"):
        checkpoint.flush()
    assert "commit" not in journal and "flush state" not in journal
    checkpoint.close()


def test_readings_waiting_for_their_grace_are_scored_on_the_way_out() -> None:
    # With a grace of two intervals, the last two readings wait for newer ones that never come.
    service, stats, *_ = run([[record(0, i, "p1", i) for i in range(6)]])
    assert stats.scored == 6 and stats.windows == 3


def test_a_sink_that_cannot_flush_stops_the_service_without_committing() -> None:
    with pytest.raises(ConnectionError, match="events is down"):
        run([[record(0, i, "p1", i) for i in range(6)]], fail=True)


def test_anomalies_reach_the_event_sink() -> None:
    _, stats, _, (_, events), _ = run(
        [[record(0, i, "p1", i, value=3.0) for i in range(8)]], threshold=0.0
    )
    published = [e for out in events.written for e in out.events]
    assert stats.anomalies == len(published) == 1
    assert published[0].asset_id == "p1" and published[0].model_version == "1"


def test_revoked_partitions_take_their_assets_state_along() -> None:
    journal: list[str] = []
    stop = threading.Event()
    source = ListSource([], journal, stop)
    service = Service(
        Settings(commit_interval_s=0), detector(1e9), source, [RecordingSink("dlq", journal)]
    )
    service.handle(
        [record(0, i, "p1", i) for i in range(3)] + [record(1, i, "p2", i) for i in range(3)]
    )
    assert set(service.processor.windower.assets()) == {"p1", "p2"}
    service.forget({("readings", 0)})
    assert service.processor.windower.assets() == ["p2"] and service.owners == {
        "p2": ("readings", 1)
    }


def test_a_stream_too_sparse_for_the_model_is_said_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The model learned one reading a second; these come every 5 minutes: each gap resets the window.
    sparse = [record(0, i, "p1", i * 300) for i in range(20)]
    with caplog.at_level("WARNING", logger="sensorwatch.pipeline"):
        service, stats, *_ = run([sparse[:10], sparse[10:]])
    assert stats.windows == 0 and stats.windowless == 19
    assert service.metrics.value("sensorwatch_windowless_stretches_total") == 19
    said = [r.getMessage() for r in caplog.records if "no window can form" in r.getMessage()]
    assert (
        len(said) == 1 and "asset=p1" in said[0] and "gap_s=300" in said[0]
    )  # once per asset a minute


def test_serving_decides_by_the_version_recipe_with_decision_fields_overridden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    source = ListSource([], journal, threading.Event())
    with caplog.at_level("INFO", logger="sensorwatch.pipeline"):
        service = Service(
            Settings(min_windows=3, window=8, stride=2, commit_interval_s=0),
            detector(1e9),
            source,
            [],
        )
    recipe = service.processor.recipe
    assert (recipe.window, recipe.min_windows, recipe.stride) == (RECIPE.window, 3, 2)
    assert service.processor.windower.window == RECIPE.window
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "ignored for serving, fixed by model version 1: window=8" in said
    assert "recipe overrides version=1 min_windows=3 stride=2" in said


@pytest.mark.parametrize(
    "huge", [1e25, 3.0e38, -3.0e38]
)  # inside float32; beyond it is rejected at parsing
def test_finite_but_huge_values_raise_an_alarm_not_the_service(huge: float) -> None:
    polls = [
        [record(0, i, "p1", i) for i in range(6)]
        + [record(0, 6 + i, "p1", 6 + i, value=huge) for i in range(6)]
    ]
    _, stats, _, (_, events), _ = run(polls, threshold=1.0)
    published = [e for out in events.written for e in out.events]
    assert stats.scored == 12 and len(published) == 1
    from sensorwatch.schemas.events import decode_event, encode_event

    event = decode_event(encode_event(published[0]))  # a valid message: every number finite
    assert event.score > 1.0 and event.asset_id == "p1"
