"""Hot model swap: every ``reload_interval_s``, whether the champion alias moved; if so, the new
version is loaded and warmed up, then handed to the processor between two polls. A registry out
of reach is logged and tried again at the next check: the service keeps scoring meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sensorwatch.models.registry import Store, alias_version, load_detector
from sensorwatch.pipeline.stream.processor import Processor

log = logging.getLogger("sensorwatch.pipeline")


class Reloader:
    """Checks the alias at most every ``every_s`` seconds (0: never)."""

    def __init__(self, store: Store | None, alias: str, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.alias, self.every_s, self.clock = store, alias, every_s, clock
        self._checked_at = clock()

    def due(self) -> bool:
        return self.store is not None and self.every_s > 0 and self.clock() - self._checked_at >= self.every_s

    def maybe_swap(self, processor: Processor, force: bool = False) -> str | None:
        """Swap in the version the alias points at, if it moved; returns the new version."""
        if self.store is None or not (force or self.due()):
            return None
        from mlflow.exceptions import MlflowException

        self._checked_at = self.clock()
        try:
            version = alias_version(self.store, self.alias)
            if not version or version == processor.detector.version:
                return None
            detector = load_detector(self.store, self.alias).warm_up()
        except (MlflowException, OSError) as exc:
            # The registry is out of reach: keep scoring with the model in hand, try again later.
            log.warning("model check failed, still serving version=%s: %s", processor.detector.version, str(exc).splitlines()[0])
            return None
        processor.swap_detector(detector)
        log.info("model reloaded version=%s", detector.version)
        return detector.version
