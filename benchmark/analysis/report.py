"""analyze(sweep_dir): build SWEEP_DIR/report/ from the sweep's run directories.

The report is built in a hidden temporary directory beside it and swapped in whole,
so a reader (or an end-of-sweep callback racing a manual run) sees the previous
complete report or the new complete one, never a half-written mixture. Running it
again on a grown sweep simply replaces the report.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from benchmark import BenchmarkError
from benchmark.analysis.api_engine import api_engine_effects, api_engine_markdown
from benchmark.analysis.attribution import attribution, attribution_markdown
from benchmark.analysis.divergence import divergence, divergence_markdown
from benchmark.analysis.environment import environment_report
from benchmark.analysis.runs import REPORT_DIRNAME, Sweep, collect
from benchmark.analysis.sanity import failed_checks, sanity_checks, sanity_markdown, verdict
from benchmark.analysis.stats import ArmPair, check_pairs, compare
from benchmark.analysis.summary import markdown, significance_table

log = logging.getLogger(__name__)


class AnalysisError(BenchmarkError):
    """Nothing to analyse (no such directory, no run directories in it)."""


def write_report(sweep: Sweep, out: Path, plots: bool = True, arm_pairs: list[ArmPair] | None = None) -> None:
    """Every report file into the (empty) directory `out`."""
    stats, pairs = compare(sweep.results, arm_pairs)
    table = significance_table(stats)
    # only completed runs, as in the statistics
    drift = divergence(sweep.curves[sweep.curves["state"] == "completed"])
    attributed = attribution(stats, pairs)
    api_engine = api_engine_effects(stats, sweep.results)
    sanity = sanity_checks(sweep.results, sweep.curves, pairs, sweep.root)
    title = sweep.root.resolve().name
    sweep.results.to_csv(out / "results.csv", index=False)
    stats.to_csv(out / "statistical_results.csv", index=False)
    table.to_csv(out / "significance_summary.csv", index=False)
    drift.to_csv(out / "divergence.csv", index=False)
    attributed.to_csv(out / "attribution.csv", index=False)
    api_engine.to_csv(out / "api_engine.csv", index=False)
    (out / "significance_summary.md").write_text(
        markdown(
            table,
            stats,
            sweep.results,
            sanity,
            title,
            extra=[api_engine_markdown(api_engine), attribution_markdown(attributed), divergence_markdown(drift)],
        )
    )
    sanity.to_csv(out / "sanity.csv", index=False)
    (out / "sanity.md").write_text(sanity_markdown(sanity, title))
    log.log(logging.WARNING if not failed_checks(sanity).empty else logging.INFO, "%s", verdict(sanity))
    (out / "environment.txt").write_text(environment_report(sweep.environments, sweep.results, title))
    if plots:
        from benchmark.analysis.plots import plot_all  # matplotlib only when drawing

        plot_all(sweep.curves, sweep.results, stats, pairs, out / "plots", drift)


def _swap_in(new: Path, target: Path) -> None:
    """Replace directory `target` by `new`: old report aside, new one in, old one deleted."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def analyze(sweep_dir: str | Path, *, plots: bool = True, compare: list[str] | None = None) -> Path:
    """Build SWEEP_DIR/report/ (results, statistics, significance, environment, plots)
    and return its path. `compare`: the arm pairs "A:B" to compare (Δ = A − B; default:
    every two arms present). Raises AnalysisError when there is nothing to analyse or
    a requested arm has no runs."""
    try:
        arm_pairs = [ArmPair.parse(text) for text in compare] if compare else None
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None
    root = Path(sweep_dir)
    if not root.is_dir():
        raise AnalysisError(f"{root} is not a directory; give the sweep directory (e.g. multirun/<date>_<time>)")
    sweep = collect(root)
    if sweep.results.empty:
        raise AnalysisError(
            f"no run directories under {root} (a run directory holds summary.json or .hydra/config.yaml)"
        )
    if arm_pairs:
        try:
            check_pairs(sweep.results, arm_pairs)
        except ValueError as exc:
            raise AnalysisError(str(exc)) from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{REPORT_DIRNAME}.new.", dir=root))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the report from the rest of the group
    try:
        write_report(sweep, tmp, plots, arm_pairs)
        _swap_in(tmp, root / REPORT_DIRNAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / REPORT_DIRNAME
