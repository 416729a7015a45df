"""`python -m benchmark.preflight [overrides]`: see benchmark.preflight."""

from benchmark.preflight import main

if __name__ == "__main__":
    raise SystemExit(main())
