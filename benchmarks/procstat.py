"""A process's CPU time from /proc, and a thread that samples it: how much of a core a process
beside the service (the embedded broker, a load generator) used over a benchmark's run; and this
process's memory (resident, peak) and a way to hand freed pages back."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path


def proc_status(field: str) -> int:
    """A /proc/self/status memory field in bytes (psutil's RSS where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    info = psutil.Process().memory_info()
    return info.rss if field == "VmRSS" else getattr(info, "peak_wset", info.rss)


def rss() -> int:
    """This process's resident memory in bytes."""
    return proc_status("VmRSS")


def trim() -> bool:
    """Hand the allocator's free pages back to the system (glibc only); whether it could."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


class CpuSampler(threading.Thread):
    """A process's CPU time, sampled once a second until ``done`` is set."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(name=f"cpu-of-{pid}", daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            used = cpu_seconds(self.pid)
            if used is not None:
                self.samples.append((time.time(), used))

    def share_by_third(self, start: float, end: float) -> list[float]:
        """Share of one core the process used in each third of [start, end] (a third with fewer
        than two samples is left out)."""
        out = []
        for k in range(3):
            a, b = start + (end - start) * k / 3, start + (end - start) * (k + 1) / 3
            inside = [(t, c) for t, c in self.samples if a <= t <= b]
            if len(inside) >= 2:
                out.append(
                    round((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]), 2)
                )
        return out
