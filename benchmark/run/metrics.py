"""Per-epoch metrics: the classification scores and the metrics.csv contract."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from benchmark import DamagedRunError
from benchmark.files import atomic_write_text

# The start of a failed run's status.json reason when its loss became non-finite
# (engine), which the sanity checks of the analysis look for.
DIVERGED = "training diverged"

# Every metrics.csv has these (epoch_time_seconds: training only, the steps' time).
CORE_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "epoch_time_seconds",
    "learning_rate",
)
# Where each epoch's wall time went (docs/performance.md "Where an epoch's time goes"):
# the whole epoch, the validation pass with its scoring, the checkpoint writes, and the
# metrics, TensorBoard, log and status writes. Runs written before these columns existed
# have none; a row whose epoch was cut before they were known has them blank.
TIMING_COLUMNS = ("epoch_wall_seconds", "eval_seconds", "checkpoint_seconds", "logging_seconds")
METRICS_COLUMNS = CORE_COLUMNS + TIMING_COLUMNS


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(accuracy, macro F1 over all `num_classes`, absent classes scoring 0)."""
    accuracy = float(accuracy_score(y_true, y_pred))
    macro_f1 = float(f1_score(y_true, y_pred, labels=np.arange(num_classes), average="macro", zero_division=0))
    return accuracy, macro_f1


class MetricsLog:
    """metrics.csv, rewritten whole (atomically) after every epoch."""

    def __init__(self, path: Path):
        """The history so far; a file that is not a whole metrics.csv is refused
        (DamagedRunError), never silently rewritten without its rows. A history written
        before TIMING_COLUMNS existed is continued with those columns blank for its epochs."""
        self.path = path
        self.rows: list[dict] = []
        if not path.exists():
            return
        try:
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                rows = [dict(r) for r in reader]
            if tuple(reader.fieldnames or ()) not in (METRICS_COLUMNS, CORE_COLUMNS):
                raise ValueError(f"its header is not {','.join(METRICS_COLUMNS)}")
            for number, row in enumerate(rows, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise ValueError(f"line {number} has {len(row) - (None in row)} fields")
                for name, value in row.items():
                    if value or name in CORE_COLUMNS:  # timing may be blank: not known
                        float(value)
        except (OSError, ValueError, csv.Error, UnicodeDecodeError) as exc:
            raise DamagedRunError(
                f"{path} is damaged ({exc}); nothing was changed: restore it, or delete the run "
                "directory to redo the run"
            ) from None
        self.rows = [{name: row.get(name, "") for name in METRICS_COLUMNS} for row in rows]

    def truncate(self, epochs_done: int) -> None:
        """Keep the rows of the first `epochs_done` epochs (a resumed run redoes the rest);
        refuse (DamagedRunError) a history that lacks one of them: resuming would end
        in a completed run whose metrics miss epochs."""
        kept = [r for r in self.rows if float(r["epoch"]) <= epochs_done]
        missing = sorted(set(range(1, epochs_done + 1)) - {int(float(r["epoch"])) for r in kept})
        if missing:
            raise DamagedRunError(
                f"{self.path} lacks epoch(s) {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''} "
                f"although the last checkpoint is after epoch {epochs_done}: the history is lost; nothing was "
                "changed: restore metrics.csv, or delete the run directory to redo the run"
            )
        self.rows = kept

    def append(self, row: dict) -> None:
        """One epoch's row: CORE_COLUMNS, and the TIMING_COLUMNS where known (blank otherwise)."""
        if not set(CORE_COLUMNS) <= set(row) <= set(METRICS_COLUMNS):
            raise ValueError(f"metrics row has columns {tuple(row)}, expected {METRICS_COLUMNS}")
        self.rows.append({name: row.get(name, "") for name in METRICS_COLUMNS})
        self._write()

    def complete_last(self, **timing: float) -> None:
        """Fill the last row's TIMING_COLUMNS once the epoch is over (its checkpoints
        are written after its row, so that the history never lacks an epoch a
        checkpoint holds)."""
        if set(timing) != set(TIMING_COLUMNS):
            raise ValueError(f"timing has {sorted(timing)}, expected {sorted(TIMING_COLUMNS)}")
        self.rows[-1].update(timing)
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())
