"""`python -m benchmark.analyze SWEEP_DIR` (or `benchmark-analyze`): the analysis' command line.

Writes SWEEP_DIR/report/ (see benchmark.analysis); `benchmark.analysis.report.analyze`
is the same step as a function, for the end-of-sweep callback and notebooks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from benchmark import BenchmarkError
from benchmark.analysis.report import analyze
from benchmark.analysis.sanity import failed_checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.analyze",
        description="Compare the arms of a sweep (docs/protocol.md §10): results.csv, paired statistics, "
        "significance summary, environment and plots in SWEEP_DIR/report/.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (run directories at any depth below it)")
    parser.add_argument("--no-plots", action="store_true", help="tables and text only (faster)")
    parser.add_argument(
        "--compare",
        action="append",
        metavar="A:B",
        help="compare arm A with arm B, delta = A - B (repeatable; default: every two arms present, "
        "the later name in alphabetical order first)",
    )
    parser.add_argument(
        "--margin",
        action="append",
        metavar="METRIC=VALUE",
        help="equivalence margin of a metric, over the sweep's analysis.margins (repeatable): test_accuracy and "
        "test_macro_f1 in percentage points, images_per_sec_avg, epochs_to_val_acc and seconds_to_val_acc in "
        "percent of the second arm's mean; e.g. --margin test_accuracy=0.3",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a sanity check fails (a go/no-go, e.g. between stage 1 and stage 2)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the sanity verdict
    try:
        report = analyze(args.sweep_dir, plots=not args.no_plots, compare=args.compare, margin=args.margin)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {report}")
    if args.strict:
        failed = failed_checks(pd.read_csv(report / "sanity.csv"))
        if not failed.empty:
            print(f"error: {len(failed)} sanity check(s) failed; see {report / 'sanity.md'}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
