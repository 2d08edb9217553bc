"""The last champion the service loaded, kept on local disk: with MLflow out of reach, the service
starts from it and keeps scoring; the registry is asked again at each reload check.

A copy is a folder with the model as the service ran it (the exported ONNX scoring graph, or the
Keras model), the detector spec and a manifest of sha256 digests (of each file, and of the graph,
or of the weights and spec as ``integrity.model_digest`` computes them). A copy whose digests do
not match, or that was kept for the other runtime, is refused, never served. An ONNX copy loads
without TensorFlow or Keras.

``serve`` starts from a checked copy at once, without importing MLflow (whose import alone takes
seconds): ``start_champion`` reads the alias from a local SQLite store's file itself (and starts
from the copy only while the alias names the copy's version, with the same threshold scale);
with a tracking server, it starts from the copy and the service asks MLflow on a thread of its
own, swapping in the registry's champion if it differs (``Reloader.confirm``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sensorwatch.models.integrity import IntegrityError, check_fit, checked_scorer, model_digest
from sensorwatch.models.mlflow_store import (
    Store,
    StoreError,
    check_artifact_home,
    check_store,
    sqlite_rows,
)
from sensorwatch.models.registry import SCALE_TAG, NoChampionError, load_detector, with_scale
from sensorwatch.models.spec import DetectorSpec

if TYPE_CHECKING:
    from sensorwatch.models.detector import Detector

log = logging.getLogger("sensorwatch.models")

MODEL, SPEC, MANIFEST = "model.keras", "detector.json", "manifest.json"
GRAPH = "scoring.onnx"


class RegistryUnreachable(RuntimeError):
    """MLflow cannot be asked for the champion and no local copy of one exists."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ChampionCache:
    """``folder/<model name>@<alias>/``: one copy, replaced whole (written aside, then renamed)."""

    def __init__(self, folder: Path | str, model_name: str, alias: str) -> None:
        self.path = Path(folder) / f"{model_name}@{alias}"

    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def save(self, detector: Detector) -> None:
        """Keep ``detector`` as the copy to start from (a failure to write is logged, not raised)."""
        try:
            self._save(detector)
        except OSError as exc:
            log.warning("could not keep a local copy of the champion in %s: %s", self.path, exc)

    def _save(self, detector: Detector) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.path.parent))
        try:
            if detector.runtime == "onnx":
                model, digest = GRAPH, detector.model.digest
                (staging / GRAPH).write_bytes(detector.model.graph)
            else:
                model, digest = MODEL, model_digest(detector.model, detector.spec)
                detector.model.save(staging / MODEL)
            (staging / SPEC).write_text(json.dumps(detector.spec.to_dict(), indent=1))
            manifest = {
                "version": detector.version,
                "runtime": detector.runtime,
                "digest": digest,
                "files": {name: _sha256(staging / name) for name in (model, SPEC)},
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
            old = self.path.with_name(self.path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if self.path.exists():
                os.replace(self.path, old)
            os.replace(staging, self.path)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def version(self) -> str | None:
        return self._manifest("version")

    def runtime(self) -> str | None:
        """The runtime the copy was kept for (None: no readable copy)."""
        return self._manifest("runtime", "keras")

    def _manifest(self, key: str, default: str | None = None) -> str | None:
        try:
            return str(json.loads((self.path / MANIFEST).read_text()).get(key, default))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def load(self, runtime: str = "keras", threads: int = 1) -> Detector:
        """The kept champion, after checking every digest; ``IntegrityError`` when one differs or
        when it was kept for another runtime than ``runtime``."""
        from sensorwatch.models.detector import Detector, OnnxScorer, onnx_digest

        try:
            manifest = json.loads((self.path / MANIFEST).read_text())
            files, version = dict(manifest["files"]), str(manifest["version"])
            kept = str(manifest.get("runtime", "keras"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"the local champion copy in {self.path} is unreadable ({exc}); refusing it"
            ) from None
        if kept != runtime:
            raise IntegrityError(
                f"the local champion copy in {self.path} was kept for the {kept} runtime, "
                f"not {runtime}; refusing it"
            )
        model_file = GRAPH if kept == "onnx" else MODEL
        for name in (model_file, SPEC):
            if not (self.path / name).is_file() or _sha256(self.path / name) != files.get(name):
                raise IntegrityError(
                    f"{self.path / name} does not match its recorded digest; refusing the local copy"
                )
        what = f"the local copy of version {version} in {self.path}"
        spec = DetectorSpec.from_dict(json.loads((self.path / SPEC).read_text()))
        if kept == "onnx":
            graph = (self.path / GRAPH).read_bytes()
            if onnx_digest(graph) != manifest.get("digest"):
                raise IntegrityError(f"{what} does not match its recorded digest; refusing it")
            scorer = checked_scorer(OnnxScorer(graph, threads), spec, what)
            return Detector(scorer, spec, version=version)
        from sensorwatch.models.backend import keras

        model = keras.saving.load_model(self.path / MODEL, safe_mode=True, compile=False)
        check_fit(model, spec, what)
        if model_digest(model, spec) != manifest.get("digest"):
            raise IntegrityError(f"{what} does not match its recorded digest; refusing it")
        return Detector(model, spec, version=version)


def load_champion(store: Store, alias: str, cache: ChampionCache | None) -> Detector:
    """The champion from MLflow, kept in ``cache``; from ``cache`` when MLflow cannot be asked.

    What MLflow answers clearly (no such alias, a URI that points nowhere, a refused version) is
    raised as it is: a local copy stands in only for a registry out of reach.
    """
    try:
        detector = load_detector(store, alias)
    except (NoChampionError, StoreError, IntegrityError):
        raise
    except Exception as exc:  # the registry is out of reach (a server down, a store locked)
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if cache is None or not cache.exists():
            where = f" and no local copy of the champion is in {cache.path}" if cache else ""
            raise RegistryUnreachable(
                f"MLflow at {store.tracking_uri} cannot be asked for the champion ({why}){where}"
            ) from None
        detector = cache.load(store.runtime, store.threads)
        log.warning(
            "MLflow at %s cannot be asked for the champion (%s): serving the local copy of version=%s from %s",
            store.tracking_uri,
            why,
            detector.version,
            cache.path,
        )
        return detector
    if cache is not None:
        cache.save(detector)
    return detector


def registered(store: Store, alias: str) -> tuple[str | None, str | None] | None:
    """(the version ``alias`` names, that version's threshold-scale tag) in a local SQLite store,
    read from its file without MLflow; None when that cannot be told this way (a tracking server,
    another database, a file MLflow keeps otherwise)."""
    scheme = store.tracking_uri.split("://", 1)[0].split("+")[0].lower()
    if scheme != "sqlite" or "://" not in store.tracking_uri:
        return None
    name = store.tracking_uri.split("://", 1)[1].removeprefix("/")
    if not name or name == ":memory:":
        return None
    db = Path(name)
    rows = sqlite_rows(
        db,
        "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
        (store.model_name, alias),
    )
    if rows is None or len(rows) > 1:  # unreadable, or one alias per MLflow workspace
        return None
    if not rows:
        return None, None
    version = str(rows[0][0])
    tags = sqlite_rows(
        db,
        "SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND key = ?",
        (store.model_name, int(rows[0][0]), SCALE_TAG),
    )
    if tags is None or len(tags) > 1:
        return None
    return version, (str(tags[0][0]) if tags else None)


def start_champion(
    store: Store, alias: str, cache: ChampionCache | None
) -> tuple[Detector, Literal["copy", "unasked copy", "mlflow"]]:
    """The champion to start serving with, and where it came from: the local copy, the local copy
    that MLflow has still to be asked about (a tracking server, not asked), or MLflow.

    The checked local copy, without importing MLflow, when one was kept for this runtime and a
    local store's alias still names its version (with a tracking server: unasked); else the
    champion from MLflow as ``load_champion`` loads it. A store that points nowhere or was moved
    is refused first, as loading from it would be. A copy refused (changed files) is said in
    one line once MLflow's champion is in hand; with MLflow out of reach, the refusal is the error.
    """
    refused = None
    if cache is not None and cache.exists() and cache.runtime() == store.runtime:
        check_store(store)
        check_artifact_home(store)
        names = registered(store, alias)
        version = cache.version()
        if names is None or names[0] == version:
            try:
                detector = cache.load(store.runtime, store.threads)
            except IntegrityError as exc:
                refused = str(exc)
            else:
                scale = names[1] if names else None
                if with_scale(detector.spec, scale) == detector.spec:
                    return detector, "unasked copy" if names is None else "copy"
    detector = load_champion(store, alias, cache)
    if refused is not None:
        log.warning("%s; serving version=%s from MLflow instead", refused, detector.version)
    return detector, "mlflow"
