"""`python -m benchmark.analyze SWEEP_DIR`: the documented path of the analysis command
(benchmark/analysis/__main__.py), and of ``analyze`` for notebooks."""

from benchmark.analysis.__main__ import main
from benchmark.analysis.report import analyze

__all__ = ["analyze", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
