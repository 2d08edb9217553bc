"""Resident memory of the service's per-asset state: what holding 1,000, 10,000 or 100,000 assets
costs, in bytes per asset and assets per GB.

Each size runs in a fresh subprocess (so one size's heap does not carry into the next). There, a
``Processor`` with the throughput benchmark's detector (the ``plant`` preset, compiled and warmed
up; a few throw-away assets run through it first and are forgotten, so one-time allocations are
not charged to the assets) is measured (RSS, the baseline), then every asset gets ``--per-asset``
readings (window + a few: its ring buffer fills, windows are scored, and it gets its threshold
and alarm track), fed time-major in batches of ``--batch`` built on the fly (never all readings
at once), and RSS is measured again after a garbage collection, and once more after glibc's
``malloc_trim`` (what the allocator holds but the state does not).

Besides the RSS delta per asset, one asset's state is sized two ways: its live objects (a deep
``sys.getsizeof`` walk, split by component: ring buffer, re-order heap, threshold, alarm, ...)
and its exported snapshot as the changelog encodes it (``pipeline/stream/state.py``).

Prints one JSON object and writes it to ``benchmarks/results/memory.json``. Asserts nothing.

    python benchmarks/memory.py [--assets 1000,10000,100000] [--per-asset 35] [--batch 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from procstat import proc_status, rss, trim

RESULTS = Path(__file__).resolve().parent / "results"
START_MS = 1_704_067_200_000
WARM_ASSETS = 64  # throw-away assets run through before the baseline


def asset_id(prefix: str, i: int) -> str:
    return f"{prefix}-{i:06d}"


def batches(
    prefix: str,
    assets: int,
    per_asset: int,
    channels: list[str],
    batch: int,
    interval_ms: int,
    seed: int = 0,
):
    """Readings of ``assets`` assets, ``per_asset`` each, time-major (as a plant's stream arrives), in
    lists of at most ``batch``: built per batch, so only one batch of ``Reading``s lives at a time.
    Ids are made afresh per reading, as a consumer decoding messages makes them."""
    from sensorwatch.schemas.records import Reading

    rng = np.random.default_rng(seed)
    for k in range(per_asset):
        ts = START_MS + k * interval_ms
        for lo in range(0, assets, batch):
            hi = min(lo + batch, assets)
            rows = rng.normal(size=(hi - lo, len(channels))).tolist()
            yield [
                Reading(asset_id(prefix, i), ts, dict(zip(channels, row)))
                for i, row in zip(range(lo, hi), rows)
            ]


def deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of ``obj`` and everything it alone reaches (objects in ``seen`` are not counted again)."""
    if obj is None or isinstance(obj, bool | type) or id(obj) in seen:
        return 0
    if type(obj) is int and -5 <= obj <= 256:  # cached small ints are shared
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, np.ndarray):
        # An array that owns its data counts it in getsizeof; a view keeps its base alive.
        if obj.base is not None:
            size += deep_size(obj.base, seen)
        return size
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                size += deep_size(getattr(obj, name), seen)
    return size


def breakdown(processor, asset: str) -> dict[str, int]:
    """One asset's live bytes by component; the dict slots are the tables' share per entry."""
    windower = processor.windower
    tracks = getattr(processor, "_tracks", {})
    st = windower._assets[asset]
    track = tracks.get(asset)
    # What every asset shares: the alarm rules, the fitted threshold's parameters.
    seen = {id(processor.rules), id(processor.detector)} | {
        id(v) for v in processor.detector.spec.threshold.values()
    }
    parts: dict[str, int] = {}
    parts["window_ring"] = deep_size(st.ring, seen) + deep_size(st.ring_ts, seen)
    parts["window_pending"] = deep_size(st.pending, seen) + deep_size(st.pending_ts, seen)
    parts["window_object"] = deep_size(st, seen)  # the rest: the object and its scalars
    if track is not None:
        parts["track_threshold"] = deep_size(track.threshold, seen)
        parts["track_alarm"] = deep_size(track.alarm, seen)
        parts["track_object"] = deep_size(track, seen)
    keys = [k for k in windower._assets if k == asset][:1] + [k for k in tracks if k == asset][:1]
    parts["asset_id_strings"] = sum(deep_size(k, seen) for k in keys)
    parts["dict_slots"] = round(
        sys.getsizeof(windower._assets) / max(len(windower._assets), 1)
        + sys.getsizeof(tracks) / max(len(tracks), 1)
    )
    parts["total"] = sum(parts.values())
    return parts


def measure(
    assets: int, per_asset: int, batch: int, preset: str, runtime: str = "keras"
) -> dict[str, object]:
    """One size, in this process: baseline, state, and the per-asset figures."""
    from untrained import detector_for

    from sensorwatch.pipeline.stream import state
    from sensorwatch.pipeline.stream.processor import Processor

    detector = detector_for(preset, runtime)
    spec = detector.spec
    channels = list(spec.channels)
    processor = Processor(detector)
    for readings in batches(
        "warm", WARM_ASSETS, per_asset, channels, batch, spec.interval_ms, seed=1
    ):
        processor.process(readings)
    processor.flush()
    processor.forget(processor.windower.assets())
    gc.collect()
    trim()
    baseline = rss()

    began, fed, windows = time.perf_counter(), 0, 0
    for readings in batches("pump", assets, per_asset, channels, batch, spec.interval_ms):
        windows += len(processor.process(readings).windows)
        fed += len(readings)
    seconds = time.perf_counter() - began
    del readings
    gc.collect()
    with_state = rss()
    trimmed = rss() if trim() else with_state

    held = len(processor.windower.assets())
    tracked = len(getattr(processor, "_tracks", {}))
    sample = asset_id("pump", assets // 2)
    exported = processor.export_state(sample)
    encoded = state.encode(exported)
    delta, delta_trimmed = with_state - baseline, trimmed - baseline
    per = delta / assets
    return {
        "assets": assets,
        "window": spec.window,
        "channels": len(channels),
        "readings": fed,
        "windows_scored": windows,
        "feed_s": round(seconds, 2),
        "readings_per_s": round(fed / seconds),
        "assets_with_windows": held,
        "assets_with_tracks": tracked,
        "baseline_rss_mib": round(baseline / 2**20, 1),
        "state_rss_mib": round(with_state / 2**20, 1),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "state_rss_trimmed_mib": round(trimmed / 2**20, 1),
        "peak_rss_mib": round(proc_status("VmHWM") / 2**20, 1),
        "state_mib": round(delta / 2**20, 1),
        "state_bytes": delta,
        "state_bytes_trimmed": delta_trimmed,
        "bytes_per_asset": round(per),
        "bytes_per_asset_trimmed": round(delta_trimmed / assets),
        "assets_per_gb": round(1e9 / per) if per > 0 else None,
        "live_bytes_one_asset": breakdown(processor, sample),
        "exported_state_bytes": len(encoded),
        "exported_arrays_bytes": sum(
            a.nbytes for a in exported["window"].values() if isinstance(a, np.ndarray)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--assets",
        default="1000,10000,100000",
        help="Sizes, comma-separated; each in its own process.",
    )
    parser.add_argument(
        "--per-asset", type=int, default=35, help="Readings per asset (window 30 + a few)."
    )
    parser.add_argument(
        "--batch", type=int, default=2000, help="Readings per Processor.process call."
    )
    parser.add_argument(
        "--preset", default="plant", help="Recipe the untrained detector is shaped by."
    )
    parser.add_argument(
        "--runtime",
        default="keras",
        choices=["keras", "onnx"],
        help="How the detector scores: the Keras model, or its exported graph in ONNX Runtime.",
    )
    parser.add_argument(
        "--one", type=int, help=argparse.SUPPRESS
    )  # a child: measure one size, print a JSON line
    args = parser.parse_args()

    if args.one is not None:
        measured = measure(args.one, args.per_asset, args.batch, args.preset, args.runtime)
        print(json.dumps(measured), flush=True)
        return

    sizes = [int(s) for s in args.assets.split(",") if s.strip()]
    runs = []
    for n in sizes:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--one",
            str(n),
            "--per-asset",
            str(args.per_asset),
            "--batch",
            str(args.batch),
            "--preset",
            args.preset,
            "--runtime",
            args.runtime,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"the run with {n} assets failed (exit {done.returncode})")
        runs.append(json.loads(lines[-1]))
        print(f"{n} assets: {runs[-1]['bytes_per_asset']} bytes each", file=sys.stderr)

    runs.sort(key=lambda r: r["assets"])
    largest = runs[-1]
    result: dict[str, object] = {
        "benchmark": "memory",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "preset": args.preset,
        "runtime": args.runtime,
        "window": runs[0]["window"],
        "channels": runs[0]["channels"],
        "readings_per_asset": args.per_asset,
        "batch": args.batch,
        "runs": runs,
        # The largest size has the least fixed overhead per asset: the figure to plan with.
        "bytes_per_asset": largest["bytes_per_asset"],
        "assets_per_gb": largest["assets_per_gb"],
        "bytes_per_asset_trimmed": largest["bytes_per_asset_trimmed"],
        "live_bytes_per_asset": largest["live_bytes_one_asset"]["total"],
        "exported_state_bytes": largest["exported_state_bytes"],
    }
    if len(runs) > 1:
        # The slope between the two largest sizes: what one more asset costs, less any fixed overhead.
        small, span = runs[-2], largest["assets"] - runs[-2]["assets"]
        result["marginal_bytes_per_asset"] = round(
            (largest["state_bytes"] - small["state_bytes"]) / span
        )
        result["marginal_bytes_per_asset_trimmed"] = round(
            (largest["state_bytes_trimmed"] - small["state_bytes_trimmed"]) / span
        )
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    name = "memory.json" if args.runtime == "keras" else f"memory-{args.runtime}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
