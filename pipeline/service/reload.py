"""Hot model swap: every ``reload_interval_s``, whether the champion alias moved; if so, the new
version is loaded, checked and warmed up, then handed to the processor between two polls, and kept
as the local copy to start from. A registry out of reach, or a version refused (its files changed
since registration, a model that does not fit its spec), is logged and the check is made again
later: the service keeps scoring with the model in hand meanwhile. A champion that cannot be
served (refused, or failing to load) is not kept quiet: ``unusable`` says why until the alias
points at a version that loads, and the service reports it as not ready (``/readyz``) and in its
metrics. The decision fields set in the settings hold for every version served
(``serving_decisions``).

A service started from its local copy of the champion without asking MLflow (``confirm``) asks it
once right after start, on the reload thread, whatever the interval: the registry's champion is
swapped in if it differs, and a registry out of reach is said in one line while the copy serves.
A version that loads but does not fit the one in hand becomes the local copy: a restart starts
from it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from sensorwatch.models.cache import ChampionCache
from sensorwatch.models.integrity import IntegrityError
from sensorwatch.models.mlflow_store import Store
from sensorwatch.models.recipe import Recipe
from sensorwatch.models.registry import alias_version, load_detector, version_scale, with_scale
from sensorwatch.pipeline.stream.processor import Processor

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector
    from sensorwatch.pipeline.settings import Settings

log = logging.getLogger("sensorwatch.pipeline")


def serving_decisions(settings: Settings, detector: Detector) -> dict[str, object]:
    """The decision fields the settings set on purpose: they hold for this version and the next
    ones. Model fields set for serving are reported and left as the version has them."""
    decisions, fixed = Recipe.split(settings.recipe_overrides())
    recipe = detector.spec.recipe
    fixed = {k: v for k, v in fixed.items() if getattr(recipe, k) != v}
    if fixed:
        log.warning(
            "ignored for serving, fixed by model version %s: %s (train a new version to change them)",
            detector.version,
            ", ".join(f"{k}={v}" for k, v in sorted(fixed.items())),
        )
    changed = {k: v for k, v in decisions.items() if getattr(recipe, k) != v}
    if changed:
        log.info(
            "recipe overrides version=%s %s",
            detector.version,
            " ".join(f"{k}={v}" for k, v in changed.items()),
        )
    return decisions


class Reloader:
    """Checks the alias at most every ``every_s`` seconds (0: never)."""

    def __init__(
        self,
        store: Store | None,
        alias: str,
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
        cache: ChampionCache | None = None,
        on_refused: Callable[[], object] = lambda: None,
        on_failed: Callable[[], object] = lambda: None,
    ) -> None:
        self.store, self.alias, self.every_s, self.clock, self.cache = (
            store,
            alias,
            every_s,
            clock,
            cache,
        )
        self.on_refused, self.on_failed = on_refused, on_failed
        self._checked_at = clock()
        self._refused: str | None = None  # the version last refused: said once, not at every check
        # Why the version the alias points at is not the one served (None when it is).
        self.unusable: str | None = None
        self._failing_since: float | None = None
        self._warned_at = float("-inf")
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future[Detector | None] | None = None
        # What the copy in hand is, while the registry has not been asked about it at start.
        self._confirm: str | None = None

    def confirm(self, copy: str) -> None:
        """Ask the registry at the next ``maybe_swap`` whether the version in hand (``copy``, e.g.
        "the local copy of version=3 from PATH") is the champion, whatever ``every_s`` says; its
        answer is taken as a reload check's."""
        self._confirm = copy

    def due(self) -> bool:
        return (
            self.store is not None
            and self.every_s > 0
            and self.clock() - self._checked_at >= self.every_s
        )

    def maybe_swap(self, processor: Processor, force: bool = False) -> str | None:
        """Swap in the version the alias moved to, once it is loaded; returns the new version.

        The check, the load and the warm-up run on a thread of their own, so a slow registry or
        compiler never holds up a poll (nor gets the consumer evicted from its group); the swap
        itself happens here, between two polls. ``force`` checks and loads now, on this thread.
        """
        if self.store is None:
            return None
        if force:
            return self._install(processor, self._check(processor.detector))
        if self._pending is not None and self._pending.done():
            pending, self._pending = self._pending, None
            return self._install(processor, pending.result())
        if self._pending is None and (self._confirm is not None or self.due()):
            self._checked_at = self.clock()
            copy, self._confirm = self._confirm, None
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-reload")
            self._pending = self._worker.submit(self._check, processor.detector, copy)
        return None

    def close(self) -> None:
        """Stop checking; a check under way is left to end on its own."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None

    def _check(self, current: Detector, copy: str | None = None) -> Detector | None:
        """The detector of the version the alias points at, loaded, checked and warmed up, when it
        differs from ``current``; None otherwise (and on any failure, which is logged). ``copy``:
        the first check of a service started from its local copy (``confirm``)."""
        self._checked_at = self.clock()
        serving, version = current.version, None
        try:
            version = alias_version(self.store, self.alias)
            if copy is not None and not version:
                log.warning(
                    "no model version of %r has alias %r in %s: still serving %s",
                    self.store.model_name,
                    self.alias,
                    self.store.tracking_uri,
                    copy,
                )
            if self._failing_since is not None:
                log.warning(
                    "model registry answers again after %.0f s", self.clock() - self._failing_since
                )
                self._failing_since, self._warned_at = None, float("-inf")
            if version and version == serving:
                self.unusable = None
                return self._rescaled(current)
            if not version or version == self._refused:
                return None
            detector = load_detector(self.store, self.alias)
            try:
                fits(detector, current)
            except IntegrityError:
                if self.cache is not None:  # the champion now: a restart starts from it
                    self.cache.save(detector)
                raise
            detector.warm_up()
        except Exception as exc:  # whatever the registry or the files do, the service keeps scoring
            self._failed(exc, version, serving, copy)
            return None
        self.unusable = None
        if self.cache is not None:
            self.cache.save(detector)
        return detector

    def _rescaled(self, current: Detector) -> Detector | None:
        """The version in hand with the threshold scale its tag now says, when that changed."""
        assert self.store is not None
        spec = with_scale(
            current.spec,
            version_scale(self.store, current.version),
            f"model version {current.version}",
        )
        if spec == current.spec:
            return None
        return replace(current, spec=spec)

    def _install(self, processor: Processor, detector: Detector | None) -> str | None:
        serving = processor.detector
        if detector is None or (
            detector.version == serving.version and detector.spec == serving.spec
        ):
            return None
        if detector.model is serving.model:
            processor.rescale(detector)
            log.info(
                "threshold scale version=%s scale=%g (the version's tag)",
                detector.version,
                detector.spec.recipe.threshold_scale,
            )
            return None
        processor.swap_detector(detector)
        log.info("model reloaded version=%s", detector.version)
        return detector.version

    def _failed(
        self, exc: Exception, version: str | None, serving: str, copy: str | None = None
    ) -> None:
        """One line when checks start failing, then at most one a minute while they go on."""
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if version is not None and version != serving:  # the alias answered: this version fails
            self.unusable = (
                f"champion version {version} cannot be served ({why}); "
                f"still serving version {serving}"
            )
        if isinstance(exc, IntegrityError):
            self._refused = version
            self.on_refused()
            log.error(
                "model version=%s refused, still serving version=%s: %s", version, serving, why
            )
            return
        self.on_failed()  # every failed check counts; the log says it once a minute
        now = self.clock()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._warned_at >= 60:
            self._warned_at = now
            if copy is not None and version is None:  # the registry did not answer at start
                log.warning(
                    "model check failed at start: MLflow at %s cannot be asked for the champion "
                    "(%s): serving %s",
                    self.store.tracking_uri if self.store else "-",
                    why,
                    copy,
                )
                return
            log.warning("model check failed, still serving version=%s: %s", serving, why)


def fits(new: Detector, current: Detector) -> None:
    """A version swapped in while serving must read the same readings the same way: the same
    channels, window length and cadence. Another one needs its own deployment (or a restart)."""
    a, b = new.spec, current.spec
    differs = [
        what
        for what, x, y in (
            ("channels", a.channels, b.channels),
            ("window", a.window, b.window),
            ("interval_ms", a.interval_ms, b.interval_ms),
        )
        if x != y
    ]
    if differs:
        shown = "; ".join(f"{w} {getattr(a, w)} instead of {getattr(b, w)}" for w in differs)
        raise IntegrityError(
            f"model version {new.version} expects other {', '.join(differs)} ({shown}): restart to change them"
        )
