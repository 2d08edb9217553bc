"""Alarm rules: from one asset's stream of window decisions to alarms that open and close.

A single anomalous window is rarely worth waking someone for, and an alarm that flickers on and
off inside one incident is many alarms for one cause. So an alarm opens only after
``min_windows`` anomalous windows in a row, stays open across gaps of up to ``merge_windows``
normal windows, and after it closes no new one opens for ``suppress_windows`` windows.

The rules are a view of the detector recipe (``sensorwatch.models.recipe.Recipe``), which declares,
documents and checks every field: ``AlarmRules.of(recipe)`` (or ``recipe.alarm_rules()``) is the
only way to make them, so they have no defaults of their own. The examples start from a plain
alarm, without the clearing and change rules below:

>>> from sensorwatch.models.recipe import Recipe
>>> plain = Recipe(clear_ratio=0, rearm_ratio=0, change_factor=0)
>>> state = AlarmRules.of(plain.updated(min_windows=2, merge_windows=1, suppress_windows=2)).new_state()
>>> [state.step(a) for a in (1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1)]
[False, True, True, True, True, False, False, False, False, False, True]

A fault often leaves the process away from its training baseline for a while after it has gone
(a pump's temperature drifts back over minutes). Two optional rules, both on the smoothed score
the threshold saw, let an alarm clear when the fault is over rather than when every channel is
back to its training level:

- ``clear_ratio``: while an alarm is open, its *level* follows the score (an exponentially
  weighted mean over ``clear_span`` windows, started at the score that opened it); a window whose
  score falls below ``clear_ratio`` × that level counts as normal, even above the threshold;
- ``rearm_ratio``: after an alarm clears, a new one needs scores above ``rearm_ratio`` × the
  level it cleared at, besides the threshold; that bar halves every ``rearm_half_life`` windows.

>>> changes = dict(min_windows=1, merge_windows=0, suppress_windows=0, clear_span=1000)
>>> rules = AlarmRules.of(plain.updated(clear_ratio=0.5, rearm_ratio=0.5, **changes))
>>> state = rules.new_state()
>>> [state.step(True, s) for s in (10.0, 10.0, 4.0, 4.0, 6.0)]
[True, True, False, False, True]

Every window is above the threshold here. The alarm opens at 10 (with so long a span its level
stays near 10), clears when the score falls to 4, below half its level, and the aftermath at 4
does not re-open it (the bar is about 5, half the level it cleared at); a new rise to 6 does.

A process also drifts in normal operation (a temperature creeps, a bearing's vibration level
wanders) further than a short training stretch showed, while faults arrive as changes. With
``change_factor`` on, each window also brings its *change*: how far some channel's level steps
inside the window, over the training steps' 99th percentile (``Detector.change``). An alarm opens
only within ``change_within`` windows of a change above ``change_factor``; an open alarm is not
affected, and a window without a change figure (a model trained before it existed) always passes:

>>> changes = dict(min_windows=2, merge_windows=0, suppress_windows=0, drift_windows=0)
>>> rules = AlarmRules.of(plain.updated(change_factor=1.0, change_within=2, **changes))
>>> state = rules.new_state()
>>> [state.step(True, 5.0, c) for c in (0.1, 0.1, 3.0, 0.1, 0.1, 0.1)]
[False, False, False, True, True, True]

The first two anomalous windows show no change (a drift): no alarm. The third steps; it and the
next make the two windows in a row that open the alarm, which then stays open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sensorwatch.models.recipe import Recipe

NEVER = 2**31 - 1  # ``since_change`` before any change: far beyond any change_within


@dataclass(frozen=True)
class AlarmRules:
    """Window decisions → alarms: open after ``min_windows`` anomalous windows in a row; windows
    within ``merge_windows`` of the last anomalous one belong to the same alarm; after an alarm
    closes, ``suppress_windows`` windows pass before another may open. ``clear_ratio`` and
    ``rearm_ratio`` (0 = off) compare scores with the alarm's own level (see the module).

    A view of the recipe's alarm fields, made by ``of``: the recipe holds their defaults, their
    descriptions and their bounds."""

    min_windows: int
    merge_windows: int
    suppress_windows: int
    clear_ratio: float
    clear_span: int
    rearm_ratio: float
    rearm_half_life: int
    change_factor: float
    change_within: int
    drift_windows: int

    @classmethod
    def of(cls, recipe: Recipe) -> AlarmRules:
        """The alarm rules of ``recipe``: its fields of the same names, as validated there."""
        return cls(**{f.name: getattr(recipe, f.name) for f in fields(cls)})

    def new_state(self) -> AlarmState:
        return AlarmState(self)


class AlarmState:
    """One asset's alarm: ``step`` takes a window decision (and its smoothed score) and says whether
    an alarm is active."""

    __slots__ = (
        "rules",
        "run",
        "since_last",
        "active",
        "opened",
        "closed",
        "quiet",
        "level",
        "bar",
        "since_change",
        "held",
        "_alpha",
        "_decay",
    )
    SAVED = ("run", "since_last", "active", "quiet", "level", "bar", "since_change", "held")
    NEW = {
        "since_change": NEVER,
        "held": 0,
    }  # state saved before these existed: as if no change was seen

    def __init__(self, rules: AlarmRules) -> None:
        self.rules = rules
        self.run = 0  # anomalous windows in a row
        self.since_last = 0  # windows since the last anomalous one, while an alarm is active
        self.active = False
        self.opened = False  # whether the last step opened a new alarm
        self.closed = False  # whether the last step closed the open one
        self.quiet = 0  # windows left during which no new alarm may open
        self.level = 0.0  # the open alarm's level: a running mean of its scores
        self.bar = 0.0  # what a score must exceed to count towards a new alarm, after one cleared
        self.since_change = NEVER  # windows since the last change above change_factor
        self.held = 0  # anomalous windows in a row held back as a drift
        self._alpha = 2.0 / (rules.clear_span + 1)
        self._decay = 0.5 ** (1.0 / rules.rearm_half_life) if rules.rearm_half_life else 1.0

    def step(self, anomalous: bool, score: float = 0.0, change: float = math.inf) -> bool:
        """Advance by one window: its decision, the smoothed score behind it (it only matters when
        ``clear_ratio`` or ``rearm_ratio`` is on) and its change (only with ``change_factor``)."""
        rules = self.rules
        if not anomalous:
            self.held = 0
        self.since_change = 0 if change > rules.change_factor else min(self.since_change + 1, NEVER)
        self.opened = self.closed = False
        suppressed = self.quiet > 0
        if suppressed:
            self.quiet -= 1
        self.bar *= self._decay
        if self.active:
            self.level += self._alpha * (score - self.level)
            if score < rules.clear_ratio * self.level:
                anomalous = False  # far below the alarm's own level: the fault is over
        elif self.bar > 0.0 and score <= self.bar:
            anomalous = False  # no higher than what the last alarm left behind
        elif anomalous and rules.change_factor > 0.0 and self.since_change > rules.change_within:
            # Away from training, but no change brought it there: a drift, held back; unless it
            # lasts drift_windows, as a slowly growing fault (wear, fouling) does.
            self.held += 1
            anomalous = bool(rules.drift_windows) and self.held >= rules.drift_windows
        if anomalous:
            self.run += 1
            self.since_last = 0
            if not self.active and not suppressed and self.run >= rules.min_windows:
                self.active = self.opened = True
                self.level = score
        else:
            self.run = 0
            if self.active:
                self.since_last += 1
                if self.since_last > rules.merge_windows:
                    self.active = False
                    self.closed = True
                    self.quiet = rules.suppress_windows
                    self.bar = rules.rearm_ratio * self.level
        return self.active

    def export(self) -> dict[str, float | int | bool]:
        """The stream state (the rules are the recipe's)."""
        return {name: getattr(self, name) for name in self.SAVED}

    def load(self, saved: dict[str, float | int | bool]) -> AlarmState:
        for name in self.SAVED:
            # State saved before the change rule existed: as if no change had been seen.
            setattr(self, name, saved[name] if name in saved else self.NEW[name])
        return self
