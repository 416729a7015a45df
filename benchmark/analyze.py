"""`python -m benchmark.analyze SWEEP_DIR`: paired statistics, tables and plots of a sweep.

Writes SWEEP_DIR/report/ (see benchmark.analysis). `analyze(sweep_dir)` is the same
step as a function, for the end-of-sweep callback and notebooks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmark import BenchmarkError
from benchmark.analysis.report import analyze

__all__ = ["analyze", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.analyze",
        description="Compare Keras and PyTorch over a sweep: results.csv, paired statistics, "
        "significance summary, environment and plots in SWEEP_DIR/report/.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (run directories at any depth below it)")
    parser.add_argument("--no-plots", action="store_true", help="tables and text only (faster)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the sanity verdict
    try:
        report = analyze(args.sweep_dir, plots=not args.no_plots)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
