"""Detection quality on SKAB: every threshold method on the chosen configuration, beside the leaderboard.

Each file is trained once; every method then decides it from the same model. Prints the Markdown
table (all 34 files, the tuning half and the held-out half) and the wall time.

    python benchmarks/skab.py [--data ../shared/datasets/skab] [--out .sensorwatch/skab] [--workers 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sensorwatch.pipeline.jobs.skab import METHOD_PARAMS, evaluate_skab, format_report
from sensorwatch.pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Settings().skab_dir, help="SKAB data folder.")
    parser.add_argument(
        "--out", type=Path, default=Path(".sensorwatch/skab"), help="Where predictions go."
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="Processes (one file each at a time)."
    )
    parser.add_argument(
        "--methods", default=",".join(METHOD_PARAMS), help="Threshold methods, comma-separated."
    )
    args = parser.parse_args()
    report = evaluate_skab(
        args.data,
        args.out,
        methods=args.methods.split(","),
        workers=args.workers,
        options=Settings().train_options(),
    )
    print(format_report(report))


if __name__ == "__main__":
    main()
