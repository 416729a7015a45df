"""`python -m benchmark.status SWEEP_DIR`: the documented path of the sweep status command
(benchmark/sweep/status.py)."""

from benchmark.sweep.status import main

if __name__ == "__main__":
    raise SystemExit(main())
