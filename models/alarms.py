"""Alarm rules: from one asset's stream of window decisions to alarms that open and close.

A single anomalous window is rarely worth waking someone for, and an alarm that flickers on and
off inside one incident is many alarms for one cause. So an alarm opens only after
``min_windows`` anomalous windows in a row, stays open across gaps of up to ``merge_windows``
normal windows, and after it closes no new one opens for ``suppress_windows`` windows.

>>> state = AlarmRules(min_windows=2, merge_windows=1, suppress_windows=2).new_state()
>>> [state.step(a) for a in (1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1)]
[False, True, True, True, True, False, False, False, False, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlarmRules:
    """Window decisions → alarms: open after ``min_windows`` anomalous windows in a row; windows
    within ``merge_windows`` of the last anomalous one belong to the same alarm; after an alarm
    closes, ``suppress_windows`` windows pass before another may open."""

    min_windows: int = 3
    merge_windows: int = 30
    suppress_windows: int = 0

    def __post_init__(self) -> None:
        if self.min_windows < 1 or self.merge_windows < 0 or self.suppress_windows < 0:
            raise ValueError("min_windows must be at least 1, merge and suppress windows at least 0")

    def new_state(self) -> AlarmState:
        return AlarmState(self)


class AlarmState:
    """One asset's alarm: ``step`` takes a window decision and says whether an alarm is active."""

    __slots__ = ("rules", "run", "since_last", "active", "opened", "quiet")

    def __init__(self, rules: AlarmRules) -> None:
        self.rules = rules
        self.run = 0  # anomalous windows in a row
        self.since_last = 0  # windows since the last anomalous one, while an alarm is active
        self.active = False
        self.opened = False  # whether the last step opened a new alarm
        self.quiet = 0  # windows left during which no new alarm may open

    def step(self, anomalous: bool) -> bool:
        self.opened = False
        suppressed = self.quiet > 0
        if suppressed:
            self.quiet -= 1
        if anomalous:
            self.run += 1
            self.since_last = 0
            if not self.active and not suppressed and self.run >= self.rules.min_windows:
                self.active = self.opened = True
        else:
            self.run = 0
            if self.active:
                self.since_last += 1
                if self.since_last > self.rules.merge_windows:
                    self.active = False
                    self.quiet = self.rules.suppress_windows
        return self.active
