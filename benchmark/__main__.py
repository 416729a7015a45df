"""`python -m benchmark [overrides]` (or the `benchmark` command): one run, or a sweep with --multirun."""

from benchmark.run.cli import main

if __name__ == "__main__":
    main()
