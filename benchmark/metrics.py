"""Per-epoch metrics: the classification scores and the metrics.csv contract."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from benchmark.rundir import atomic_write_text

# The start of a failed run's status.json reason when its loss became non-finite
# (engine), which the sanity checks of the analysis look for.
DIVERGED = "training diverged"

METRICS_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "epoch_time_seconds",
    "learning_rate",
)


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(accuracy, macro F1 over all `num_classes`, absent classes scoring 0)."""
    accuracy = float(accuracy_score(y_true, y_pred))
    macro_f1 = float(f1_score(y_true, y_pred, labels=np.arange(num_classes), average="macro", zero_division=0))
    return accuracy, macro_f1


class MetricsLog:
    """metrics.csv, rewritten whole (atomically) after every epoch."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():
            with open(path, newline="") as fh:
                self.rows = [dict(r) for r in csv.DictReader(fh)]

    def truncate(self, epochs_done: int) -> None:
        """Keep the rows of the first `epochs_done` epochs (a resumed run redoes the rest)."""
        self.rows = [r for r in self.rows if int(r["epoch"]) <= epochs_done]

    def append(self, row: dict) -> None:
        if tuple(row) != METRICS_COLUMNS:
            raise ValueError(f"metrics row has columns {tuple(row)}, expected {METRICS_COLUMNS}")
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())
