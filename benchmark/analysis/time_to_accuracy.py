"""Time to accuracy: when a run first reached each target val accuracy of its dataset.

The figure DAWNBench and MLPerf Training quote for training speed. Targets are set per
dataset in conf/dataset/*.yaml (`accuracy_targets`) and recorded in each run's
summary.json; runs recorded before that use the package's current targets. Per run
and target, results.csv gets two columns:

- `epochs_to_val_acc_<t>`: the first epoch whose val accuracy is ≥ t;
- `seconds_to_val_acc_<t>`: the training seconds (the sum of epoch_time_seconds: the
  training steps only, no evaluation or checkpointing) up to and including that epoch.

**Convention for a run that never reaches a target:** in a completed run both cells
are `inf` (it did not reach t within its epochs); in a run that has not completed
they are empty (it may still). In the paired statistics (benchmark.analysis.stats) an
`inf` is a censored value, never dropped silently: the Wilcoxon test ranks a pair in
which only one arm reached the target as larger than every pair in which both did,
in favour of the arm that reached it, and a pair in which neither did as a tie;
delta, its CI, the t-test and d_z use the pairs in which both reached it, and the
row's note counts each kind.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CONF_DATASETS = Path(__file__).resolve().parents[2] / "conf" / "dataset"
EPOCHS_PREFIX, SECONDS_PREFIX = "epochs_to_val_acc_", "seconds_to_val_acc_"
_COLUMN = re.compile(rf"^({EPOCHS_PREFIX}|{SECONDS_PREFIX})(\d*\.?\d+)$")


def columns(target: float) -> tuple[str, str]:
    """(epochs column, seconds column) of one target, e.g. epochs_to_val_acc_0.9."""
    return f"{EPOCHS_PREFIX}{target:g}", f"{SECONDS_PREFIX}{target:g}"


def parse(column: str) -> tuple[str, float] | None:
    """("epochs" | "seconds", target) of a time-to-accuracy column, else None."""
    match = _COLUMN.match(column)
    if not match:
        return None
    return ("epochs" if match.group(1) == EPOCHS_PREFIX else "seconds"), float(match.group(2))


@cache
def default_targets(dataset: str) -> tuple[float, ...]:
    """The targets conf/dataset/<dataset>.yaml sets today (for runs that did not record theirs)."""
    try:
        conf = yaml.safe_load((CONF_DATASETS / f"{dataset}.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ()
    return tuple(sorted(float(t) for t in conf.get("accuracy_targets") or ()))


def run_targets(summary: dict, dataset) -> tuple[float, ...]:
    recorded = summary.get("accuracy_targets")
    if recorded is not None:
        return tuple(sorted(float(t) for t in recorded))
    return default_targets(str(dataset)) if isinstance(dataset, str) else ()


def time_to_accuracy(metrics: pd.DataFrame, targets, completed: bool) -> dict:
    """The columns of one run (metrics.csv sorted by epoch, as benchmark.analysis.runs reads it)."""
    out: dict[str, float] = {}  # an epoch number, or inf / NaN where the target was never reached
    accuracy = metrics["val_accuracy"].to_numpy(float)
    seconds = np.cumsum(np.nan_to_num(metrics["epoch_time_seconds"].to_numpy(float)))
    for target in targets:
        epochs_column, seconds_column = columns(target)
        reached = np.flatnonzero(accuracy >= target)
        if len(reached):
            out[epochs_column] = int(metrics["epoch"].iloc[reached[0]])
            out[seconds_column] = float(seconds[reached[0]])
        else:
            never = math.inf if completed else np.nan
            out[epochs_column], out[seconds_column] = never, never
    return out


def ordered(columns_present) -> list[str]:
    """The time-to-accuracy columns among `columns_present`, by target, epochs first."""
    found = [(parse(c), c) for c in columns_present]
    return [c for p, c in sorted(((p, c) for p, c in found if p), key=lambda pc: (pc[0][1], pc[0][0]))]


def censored_counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(pairs where only a never reached, only b never reached, neither reached)."""
    never_a, never_b = np.isinf(a), np.isinf(b)
    return int((never_a & ~never_b).sum()), int((~never_a & never_b).sum()), int((never_a & never_b).sum())
