"""Where an epoch's wall time goes, per arm: training steps, evaluation, checkpoints,
logging and the rest (metrics.csv's timing columns, benchmark.run.metrics.TIMING_COLUMNS).

A speed comparison of training images/s says nothing of what a user waits for: the
whole epoch. This table puts the two side by side for every arm (and execution mode)
of every group, over the completed runs' epochs that recorded their timing (runs made
before the columns existed have none and are left out, counted in `epochs_timed`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analysis.stats import GROUP, arm_names
from benchmark.spec.runkey import MODE_FIELD

EPOCH_COST_COLUMNS = (
    *GROUP,
    "arm",
    MODE_FIELD,
    "runs",
    "epochs_timed",
    "train_seconds",  # per epoch, mean over the timed epochs of the arm's runs
    "eval_seconds",
    "checkpoint_seconds",
    "logging_seconds",
    "other_seconds",  # the wall time the parts above leave: the trainer's work outside its clock
    "epoch_wall_seconds",
    "wall_over_train",  # Σ wall / Σ training
    "outside_training_share",  # 1 - Σ training / Σ wall
)
PARTS = ("eval_seconds", "checkpoint_seconds", "logging_seconds")


def epoch_cost(curves: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, arm, execution mode): the mean split of a timed epoch."""
    if curves.empty or "epoch_wall_seconds" not in curves:
        return pd.DataFrame(columns=list(EPOCH_COST_COLUMNS))
    timed = curves[(curves["state"] == "completed") & curves["epoch_wall_seconds"].notna()]
    timed = timed.merge(results[["run_dir", MODE_FIELD]], on="run_dir", how="left")
    if timed.empty:
        return pd.DataFrame(columns=list(EPOCH_COST_COLUMNS))
    timed = timed.assign(arm=arm_names(timed), variant=timed["variant"].fillna("").astype(str))
    timed[MODE_FIELD] = timed[MODE_FIELD].fillna("unknown")
    rows = []
    for keys, epochs in timed.groupby([*GROUP, "arm", MODE_FIELD], sort=True):
        train, wall = epochs["epoch_time_seconds"].sum(), epochs["epoch_wall_seconds"].sum()
        parts = {name: epochs[name].mean() for name in PARTS}
        row = dict(zip([*GROUP, "arm", MODE_FIELD], keys, strict=True))
        row.update(
            runs=epochs["run_dir"].nunique(),
            epochs_timed=len(epochs),
            train_seconds=epochs["epoch_time_seconds"].mean(),
            **parts,
            other_seconds=epochs["epoch_wall_seconds"].mean()
            - epochs["epoch_time_seconds"].mean()
            - sum(parts.values()),
            epoch_wall_seconds=epochs["epoch_wall_seconds"].mean(),
            wall_over_train=wall / train if train > 0 else np.nan,
            outside_training_share=1 - train / wall if wall > 0 else np.nan,
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(EPOCH_COST_COLUMNS))


def epoch_cost_markdown(table: pd.DataFrame) -> str:
    """The report's "Where the time goes" section ("" when no run recorded its timing)."""
    if table.empty:
        return ""
    groups = [g for g in GROUP if table[g].nunique() > 1 or g != "variant"]
    lines = [
        "## Where the time goes",
        "",
        "Per epoch, mean over the completed runs' epochs (epoch_cost.csv): the training steps "
        "(what images/s measures), then evaluation, checkpoints and logging, and the rest of the "
        "epoch's wall time. Wall/train is what a user waits for per second of training.",
        "",
        "| "
        + " | ".join([*groups, "arm", "mode", "train s", "eval s", "checkpoint s", "logging s", "other s"])
        + " | epoch wall s | wall/train | outside training |",
        "|" + "---|" * (len(groups) + 10),
    ]
    for _, r in table.iterrows():
        cells = [str(r[g]) if str(r[g]) else "—" for g in groups] + [r["arm"], r[MODE_FIELD]]
        cells += [f"{r[c]:.2f}" for c in ("train_seconds", *PARTS, "other_seconds", "epoch_wall_seconds")]
        cells += [f"{r['wall_over_train']:.3f}", f"{100 * r['outside_training_share']:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
