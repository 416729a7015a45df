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

import yaml

from benchmark import BenchmarkError
from benchmark.analysis.api_engine import api_engine_effects, api_engine_markdown
from benchmark.analysis.attribution import attribution, attribution_markdown
from benchmark.analysis.divergence import divergence, divergence_markdown
from benchmark.analysis.environment import environment_report
from benchmark.analysis.epoch_cost import epoch_cost, epoch_cost_markdown
from benchmark.analysis.runs import REPORT_DIRNAME, Sweep, collect, read_yaml
from benchmark.analysis.sanity import failed_checks, sanity_checks, sanity_markdown, verdict
from benchmark.analysis.stats import ArmPair, check_pairs, compare
from benchmark.analysis.summary import markdown, significance_table
from benchmark.analysis.verdicts import Margin, MarginError, margins
from benchmark.files import set_mode

log = logging.getLogger(__name__)


class AnalysisError(BenchmarkError):
    """Nothing to analyse (no such directory, no run directories in it)."""


def declared_margins(root: Path, run_dirs, overridden: frozenset[str] = frozenset()) -> dict | None:
    """The `analysis.margins` the sweep declared: its multirun.yaml (the latest launch),
    else what its runs' .hydra/config.yaml record when they agree (None: nothing recorded,
    the defaults hold). Runs that record different margins for a metric not in
    `overridden` (given with --margin) are an AnalysisError."""
    sources = [root / "multirun.yaml"]
    if not sources[0].is_file():
        sources = [root / str(d) / ".hydra" / "config.yaml" for d in run_dirs]
    found: dict[str, Path] = {}
    for path in sources:
        cfg = read_yaml(path)
        declared = (cfg.get("analysis") or {}).get("margins") if isinstance(cfg, dict) else None
        if isinstance(declared, dict):
            declared = {k: v for k, v in declared.items() if k not in overridden}
            found.setdefault(yaml.safe_dump(declared, sort_keys=True), path)
    if len(found) > 1:
        first, second = list(found.values())[:2]
        raise AnalysisError(
            f"runs of this sweep declare different analysis.margins ({first} and {second}); "
            "give the margins on the command line: --margin METRIC=VALUE"
        )
    return yaml.safe_load(next(iter(found))) if found else None


def write_report(
    sweep: Sweep,
    out: Path,
    plots: bool = True,
    arm_pairs: list[ArmPair] | None = None,
    margins_in_force: dict[str, Margin] | None = None,
) -> None:
    """Every report file into the (empty) directory `out`."""
    stats, pairs = compare(sweep.results, arm_pairs, margins_in_force)
    table = significance_table(stats)
    # only completed runs, as in the statistics
    drift = divergence(sweep.curves[sweep.curves["state"] == "completed"])
    attributed = attribution(stats, pairs)
    api_engine = api_engine_effects(stats, sweep.results)
    cost = epoch_cost(sweep.curves, sweep.results)
    sanity = sanity_checks(sweep.results, sweep.curves, pairs, sweep.root)
    title = sweep.root.resolve().name
    sweep.results.to_csv(out / "results.csv", index=False)
    stats.to_csv(out / "statistical_results.csv", index=False)
    table.to_csv(out / "significance_summary.csv", index=False)
    drift.to_csv(out / "divergence.csv", index=False)
    attributed.to_csv(out / "attribution.csv", index=False)
    api_engine.to_csv(out / "api_engine.csv", index=False)
    cost.to_csv(out / "epoch_cost.csv", index=False)
    (out / "significance_summary.md").write_text(
        markdown(
            table,
            stats,
            sweep.results,
            sanity,
            title,
            extra=[
                api_engine_markdown(api_engine),
                attribution_markdown(attributed),
                divergence_markdown(drift),
                epoch_cost_markdown(cost),
            ],
            sweep_dir=sweep.root,
            margins=margins_in_force,
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


def analyze(
    sweep_dir: str | Path,
    *,
    plots: bool = True,
    compare: list[str] | None = None,
    margin: list[str] | None = None,
    declared: dict | None = None,
) -> Path:
    """Build SWEEP_DIR/report/ (results, statistics, significance, environment, plots)
    and return its path. `compare`: the arm pairs "A:B" to compare (Δ = A − B; default:
    every two arms present). `margin`: "METRIC=VALUE" equivalence margins over those
    the sweep declared (`declared`, its analysis.margins; default: read from the sweep).
    Raises AnalysisError when there is nothing to analyse, a requested arm has no runs
    or a margin is not valid; then nothing is written."""
    try:
        arm_pairs = [ArmPair.parse(text) for text in compare] if compare else None
        margins(None, margin)  # a bad --margin fails before the sweep is read
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
    if declared is None:
        given = frozenset(text.partition("=")[0].strip() for text in margin or [])
        declared = declared_margins(root, sweep.results["run_dir"], given)
    try:
        in_force = margins(declared, margin)
    except MarginError as exc:
        raise AnalysisError(str(exc)) from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{REPORT_DIRNAME}.new.", dir=root))
    set_mode(tmp, 0o755)  # mkdtemp's 0700 would hide the report from the group; never through a link
    try:
        write_report(sweep, tmp, plots, arm_pairs, in_force)
        _swap_in(tmp, root / REPORT_DIRNAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / REPORT_DIRNAME
