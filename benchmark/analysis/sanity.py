"""The sanity checks of docs/protocol.md §6: does the protocol behave, before anyone reads a p-value?

Five checks, each a set of rows in sanity.csv (one per subject it applies to) and a
section of sanity.md:

- finite: no run diverged. A run fails it when its metrics.csv holds a non-finite
  loss or its status.json says training diverged (the engine stops a run at the
  first non-finite epoch loss and marks it failed with that reason).
- val_accuracy: every completed run of a dataset with a floor in MIN_VAL_ACCURACY
  reaches it (best val accuracy, strictly above: CIFAR-10 > 85%, CIFAR-100 > 55%).
  The floors are for the full protocol; a shortened run (``epochs=3``) is expected to
  fail them, and its row says how many epochs it ran.
- seeds_differ: within one arm (and execution mode), dataset, model, precision and
  variant, no two seeds produced the same training curves (train/val loss, accuracy and F1 of every epoch).
  Identical curves mean the seed does not reach the initialisation or the data
  order, and the "paired by seed" statistics would be meaningless.
- frameworks_agree: the two arms of every comparison (runs of the same dataset,
  model, precision and seed) end within MAX_FRAMEWORK_GAP of each other in test
  accuracy (5 points). A larger gap points at a protocol difference rather than at
  seed noise.
- same_data: all runs of one dataset saw the same prepared data (images, labels and
  splits: the data_fingerprint of summary.json). Caches built from different sources
  (the Tiny-ImageNet zip and its parquet mirror order images differently) give other
  splits, and runs on them must not be compared. Runs without a fingerprint (written
  by an older version) are left out of this check.

Except for `finite`, which looks at every run whatever its state, runs are taken as
the statistics take them: completed runs, one per arm, execution mode and seed
(stats.one_run_per_seed), and two arms paired within one execution mode each
(stats.by_execution_mode). A completed run without metrics.csv has no curves to
compare and is left out of seeds_differ. A check that has no subject (e.g. one seed
only) has no rows; the Markdown says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analysis.stats import GROUP, one_run_per_seed, with_arm
from benchmark.analysis.tables import markdown_table
from benchmark.files import read_json
from benchmark.run.metrics import DIVERGED
from benchmark.spec.runkey import KEY, MODE_FIELD, PAIR_FIELD, REQUIRED_KEY

MIN_VAL_ACCURACY = {"cifar10": 0.85, "cifar100": 0.55}
MAX_FRAMEWORK_GAP = 0.05
LOSS_COLUMNS = ("train_loss", "val_loss")
# The per-epoch columns that a seed changes; time and learning rate do not depend on it.
SEEDED_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1")
CHECKS = {
    "finite": "no NaN or Inf loss in any run",
    "val_accuracy": "best val accuracy above the dataset's floor ("
    + ", ".join(f"{ds} > {floor:.0%}" for ds, floor in MIN_VAL_ACCURACY.items())
    + ")",
    "seeds_differ": "different seeds give different training curves",
    "same_data": "every run of a dataset saw the same images, labels and splits (data fingerprint)",
    "frameworks_agree": f"the two arms of each comparison within {MAX_FRAMEWORK_GAP * 100:g} points of test accuracy "
    "on the same dataset, model, precision and seed",
}
SANITY_COLUMNS = ("check", *KEY, "value", "limit", "passed", "detail")


def _row(check: str, scope: dict, value: float, limit: float, passed: bool, detail: str) -> dict:
    return {
        "check": check,
        **{name: scope.get(name) for name in KEY},
        "value": value,
        "limit": limit,
        "passed": bool(passed),
        "detail": detail,
    }


def _finite(results: pd.DataFrame, curves: pd.DataFrame, root) -> list[dict]:
    rows = []
    losses = curves.groupby("run_dir")[list(LOSS_COLUMNS)].agg(lambda col: bool(np.isfinite(col).all()))
    for run in results.itertuples(index=False):
        reason = ""
        if run.state == "failed":
            reason = str((read_json(root / run.run_dir / "status.json") or {}).get("reason", ""))
        finite_curves = bool(losses.loc[run.run_dir].all()) if run.run_dir in losses.index else True
        diverged = DIVERGED in reason or not finite_curves
        detail = (
            reason if DIVERGED in reason else ("non-finite loss in metrics.csv" if not finite_curves else run.run_dir)
        )
        rows.append(_row("finite", run._asdict(), float(diverged), 0.0, not diverged, detail))
    return rows


def _val_accuracy(completed: pd.DataFrame) -> list[dict]:
    rows = []
    for run in completed[completed["dataset"].isin(list(MIN_VAL_ACCURACY))].itertuples(index=False):
        floor = MIN_VAL_ACCURACY[run.dataset]
        rows.append(
            _row(
                "val_accuracy",
                run._asdict(),
                run.acc_best,
                floor,
                run.acc_best > floor,
                f"{run.run_dir} ({run.epochs_done} epochs)",
            )
        )
    return rows


def _seeds_differ(completed: pd.DataFrame, curves: pd.DataFrame) -> list[dict]:
    rows = []
    by_run = {run_dir: curve[list(SEEDED_COLUMNS)] for run_dir, curve in curves.groupby("run_dir")}
    with_curves = completed[completed["run_dir"].isin(set(by_run))]
    for _, runs in with_curves.groupby(["arm", MODE_FIELD, *GROUP], sort=True):
        if runs[PAIR_FIELD].nunique() < 2:
            continue
        fingerprints: dict[bytes, list[int]] = {}  # a curve's bytes -> the seeds that drew it
        for run in runs.itertuples(index=False):
            fingerprints.setdefault(by_run[run.run_dir].round(12).to_numpy().tobytes(), []).append(int(run.seed))
        same = [seeds for seeds in fingerprints.values() if len(seeds) > 1]
        scope = runs.iloc[0].drop(PAIR_FIELD).to_dict()
        detail = "; ".join("seeds " + ", ".join(map(str, sorted(s))) + " identical" for s in same) or (
            f"{len(fingerprints)} seeds, all curves distinct"
        )
        rows.append(
            _row("seeds_differ", scope, float(len(fingerprints)), float(runs[PAIR_FIELD].nunique()), not same, detail)
        )
    return rows


def _same_data(completed: pd.DataFrame) -> list[dict]:
    rows = []
    known = completed[completed["data_fingerprint"].fillna("").astype(str) != ""]
    for dataset, runs in known.groupby("dataset", sort=True):
        counts = runs["data_fingerprint"].value_counts()
        detail = "; ".join(f"{fingerprint}: {n} runs" for fingerprint, n in counts.items())
        if len(counts) > 1:  # name the runs of the minority data
            minority = runs[runs["data_fingerprint"] != counts.index[0]]["run_dir"]
            detail += f" (other data: {', '.join(minority.head(5))}{', ...' if len(minority) > 5 else ''})"
        rows.append(_row("same_data", {"dataset": dataset}, float(len(counts)), 1.0, len(counts) == 1, detail))
    return rows


def _frameworks_agree(pairs: pd.DataFrame) -> list[dict]:
    rows = []
    for pair in pairs[pairs["metric"] == "test_accuracy"].itertuples(index=False):
        gap = abs(pair.a - pair.b)
        detail = f"{pair.arm_a} {pair.a:.4f} ({pair.mode_a}), {pair.arm_b} {pair.b:.4f} ({pair.mode_b})"
        rows.append(_row("frameworks_agree", pair._asdict(), gap, MAX_FRAMEWORK_GAP, gap <= MAX_FRAMEWORK_GAP, detail))
    return rows


def sanity_checks(results: pd.DataFrame, curves: pd.DataFrame, pairs: pd.DataFrame, root) -> pd.DataFrame:
    """sanity.csv: one row per check and subject (run, seed pair or framework arm);
    `pairs` are the statistics' seed pairs (stats.compare)."""
    keyed = with_arm(results.dropna(subset=list(REQUIRED_KEY)))
    chosen = [one_run_per_seed(runs)[0] for _, runs in keyed.groupby(list(GROUP))]
    completed = pd.concat(chosen, ignore_index=True) if chosen else keyed.iloc[0:0]
    rows = [
        *_finite(results, curves, root),
        *_val_accuracy(completed),
        *_seeds_differ(completed, curves),
        *_same_data(completed),
        *_frameworks_agree(pairs),
    ]
    sanity = pd.DataFrame(rows, columns=list(SANITY_COLUMNS))
    sanity["seed"] = sanity["seed"].astype("Int64")
    return sanity


def failed_checks(sanity: pd.DataFrame) -> pd.DataFrame:
    return sanity[~sanity["passed"].astype(bool)]


def verdict(sanity: pd.DataFrame) -> str:
    """One sentence: all passed, or which checks failed how often."""
    failed = failed_checks(sanity)
    if failed.empty:
        return f"Sanity checks (docs/protocol.md §6): all {len(sanity)} passed"
    counts = ", ".join(f"{check} {count}x" for check, count in failed["check"].value_counts(sort=False).items())
    return (
        f"Sanity checks (docs/protocol.md §6) FAILED: {counts} (of {len(sanity)}); "
        "a failed check can mean the two arms did not run the same protocol, so read it before the statistics"
    )


def sanity_markdown(sanity: pd.DataFrame, title: str) -> str:
    """sanity.md: one line per check (passed / failed / no subject), then every failure."""
    lines = [f"# Sanity checks (docs/protocol.md §6) — {title}", ""]
    for check, what in CHECKS.items():
        rows = sanity[sanity["check"] == check]
        failed = failed_checks(rows)
        if rows.empty:
            verdict = "no subject in this sweep"
        elif failed.empty:
            verdict = f"**passed** ({len(rows)} checked)"
        else:
            verdict = f"**FAILED** for {len(failed)} of {len(rows)}"
        lines.append(f"- `{check}`: {what}: {verdict}")
    failures = failed_checks(sanity)
    if failures.empty:
        lines += ["", "No failures."]
    else:
        shown = failures[["check", *KEY, "value", "limit", "detail"]].astype(object)
        for column in ("value", "limit"):
            shown[column] = shown[column].map(lambda v: f"{v:.4g}")
        shown = shown.where(shown.notna(), "")
        lines += ["", "## Failures", "", markdown_table(shown)]
    lines += ["", "Every row, passed or not, is in sanity.csv."]
    return "\n".join(lines) + "\n"
