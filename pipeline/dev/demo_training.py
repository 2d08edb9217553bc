"""What ``sensorwatch demo`` trains on and with: a day of the simulated plant in stretches, then a
long run of normal readings, and the training settings it uses where the user set none."""

from __future__ import annotations

from sensorwatch.models.cadence import TimeSeries
from sensorwatch.pipeline.dev.simulator import Simulator, series_by_asset
from sensorwatch.pipeline.settings import Settings

TRAIN_READINGS = 16_000  # normal readings per asset for training: a few hours, many load changes
# ...just before the stream, after DAY_PIECES stretches of DAY_PIECE readings spread evenly over
# the day before: the pumps follow a daily cycle (demand and ambient temperature), and a model
# that saw only some hours of it raises false alarms in the others (on four new days with 16
# faults each, from 02, 08, 14 and 20 h: 3.3 per 10,000 readings with the 16,000 alone, 6.2 in
# the afternoon; 0.4 with the day's stretches, at most 1.0 in any of them; all 64 faults found).
DAY_PIECES, DAY_PIECE = 8, 2000
# What the demo trains with unless the environment says otherwise: the default recipe (its pumps
# change operating point every few minutes, so the training data makes it the moving one: see
# models/process.py), on every 10th window of the long history (neighbouring windows teach
# little), for at most 12 epochs.
DEMO_DEFAULTS = {"train_stride": 10, "epochs": 12}
DAY_MS = 86_400_000


def training_series(sim: Simulator) -> list[TimeSeries]:
    """What the demo trains on, from where ``sim`` stands: a day in ``DAY_PIECES`` stretches of
    ``DAY_PIECE`` readings, one every ``1 / DAY_PIECES`` of it, then the next ``TRAIN_READINGS``
    readings whole. Every hour of the daily cycle is near some stretch, and the hours the stream
    follows are all there.

    >>> pieces = training_series(Simulator(assets=1, seed=7))  # from midnight
    >>> [int(p.ts_ms[0] // 3_600_000 % 24) for p in pieces], [len(p) for p in pieces][-2:]
    ([0, 3, 6, 9, 12, 15, 18, 21, 0], [2000, 16000])
    """
    day = DAY_MS // sim.interval_ms
    series: list[TimeSeries] = []
    for i in range(DAY_PIECES):
        series += series_by_asset(sim.normal(DAY_PIECE))
        skip = (i + 1) * day // DAY_PIECES - (i * day // DAY_PIECES + DAY_PIECE)
        if skip > 0:
            sim.normal(skip)  # the hours between two stretches
    return series + series_by_asset(sim.normal(TRAIN_READINGS))


def demo_settings(settings: Settings) -> Settings:
    """The demo's training defaults, where the user set nothing else."""
    return settings.model_copy(
        update={k: v for k, v in DEMO_DEFAULTS.items() if k not in settings.model_fields_set}
    )
