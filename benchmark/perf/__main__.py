"""`python -m benchmark.perf` (or `benchmark-perf`): see benchmark.perf."""

from benchmark.perf import main

if __name__ == "__main__":
    raise SystemExit(main())
