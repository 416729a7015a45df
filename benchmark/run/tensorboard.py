"""The run's TensorBoard scalars: one point per metric and epoch, written by the neutral engine.

The event file lies in the run directory itself, so `tensorboard --logdir SWEEP_DIR`
names every run by its directory, which is its key (benchmark.spec.runkey). The writer is
TensorBoard's own (`EventFileWriter`, the one `torch.utils.tensorboard` uses) and the
scalars are plain protocol buffers: no framework is imported for them.

metrics.csv is the run's history; the event file is a view of it. A resumed run
continues from its last checkpoint, so epochs written after that checkpoint by the
killed process are written again: on opening, the points of the epochs kept (step ≤
epochs done) are copied, with their original wall times, from the old event files
into a new one and the old files are deleted, so every (tag, step) is on disk once.
A kill in the middle of that leaves both files; the next opening merges them again.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
import types
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_GLOB = "events.out.tfevents.*"

# metrics.csv column -> TensorBoard tag; the prefix is the section of TensorBoard's page,
# so train and val of one quantity sit side by side
TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "val_macro_f1": "macro_f1/val",
    "learning_rate": "optim/learning_rate",
    "images_per_sec": "speed/images_per_sec",
    "epoch_time_seconds": "speed/epoch_seconds",
}
# metrics.csv's TIMING_COLUMNS -> tag: where each epoch's wall time went, written once the epoch is over
TIMING_TAGS = {
    "epoch_wall_seconds": "time/epoch_wall_seconds",
    "eval_seconds": "time/eval_seconds",
    "checkpoint_seconds": "time/checkpoint_seconds",
    "logging_seconds": "time/logging_seconds",
}


def _without_tensorflow() -> None:
    """Make TensorBoard use its own file I/O, not TensorFlow's.

    `tensorboard.compat.tf` resolves to TensorFlow whenever it is installed, so writing
    events from a PyTorch run would import all of TensorFlow. TensorBoard's switch for
    its stub is the presence of the module `tensorboard.compat.notf` (its
    no_tensorflow build target); registering an empty one before the first use selects
    the stub, which writes local files the same way."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def read_events(path: Path) -> list:
    """The scalar events of one event file (tensorboard's own reader); a file cut by a
    kill yields the events before the cut."""
    _without_tensorflow()
    # the legacy loader yields the events as written (the other one migrates scalars to tensors)
    # after _without_tensorflow()
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    events = []
    try:
        for event in LegacyEventFileLoader(str(path)).Load():
            if event.WhichOneof("what") == "summary":
                events.append(event)
    except Exception as exc:  # a damaged file: what was read stays, the rest is lost
        log.warning("TensorBoard events of %s partly unreadable (%s); epochs after that point are rewritten", path, exc)
    return events


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} over every event file of a run, in file order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(run_dir).glob(EVENT_GLOB)):
        for event in read_events(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return out


class TensorBoardLog:
    """Append-only scalars of one run, step = epoch (1-based, as in metrics.csv)."""

    def __init__(self, run_dir: Path, epochs_done: int):
        _without_tensorflow()
        # only after _without_tensorflow(): imported earlier, TensorBoard would load TensorFlow
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.run_dir = Path(run_dir)
        old = sorted(self.run_dir.glob(EVENT_GLOB))
        kept = self._kept_events(old, epochs_done)
        # flush_secs: the writer's thread also flushes on its own; every epoch flushes anyway
        # the writer opens its file by name (time, host, pid): a random suffix makes the
        # name one nobody can plant a link at beforehand in a shared run directory
        self._writer = EventFileWriter(str(self.run_dir), flush_secs=30, filename_suffix=f".{secrets.token_hex(8)}")
        for event in kept:
            self._writer.add_event(event)
        self._writer.flush()
        for path in old:  # the new file's name holds this process's id and start time
            path.unlink(missing_ok=True)

    @staticmethod
    def _kept_events(paths: list[Path], epochs_done: int) -> list:
        """One event per (tag, step ≤ epochs_done): the one written last (by wall time)."""
        latest: dict[tuple[str, int], Any] = {}  # tensorboard's Event protos
        for path in paths:
            for event in read_events(path):
                if event.step > epochs_done:
                    continue
                for value in event.summary.value:
                    key = (value.tag, int(event.step))
                    if key not in latest or latest[key].wall_time <= event.wall_time:
                        latest[key] = _single(event, value)
        return sorted(latest.values(), key=lambda e: (e.step, e.wall_time))

    def add_epoch(self, row: dict, images_per_sec: float) -> None:
        """Every TAGS scalar of one metrics.csv row, then flush (TensorBoard reads it live)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2  # after _without_tensorflow(), as above

        values = {**row, "images_per_sec": images_per_sec}
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=tag, simple_value=float(values[column])) for column, tag in TAGS.items()
            ]
        )
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(row["epoch"]), summary=summary))
        self._writer.flush()

    def add_timing(self, epoch: int, timing: dict) -> None:
        """The TIMING_TAGS scalars of one epoch, then flush."""
        from tensorboard.compat.proto import event_pb2, summary_pb2  # after _without_tensorflow(), as above

        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=tag, simple_value=float(timing[column]))
                for column, tag in TIMING_TAGS.items()
            ]
        )
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(epoch), summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _single(event, value):
    """A copy of `event` holding only `value` (old events may hold several tags)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2  # after _without_tensorflow(), as above

    return event_pb2.Event(wall_time=event.wall_time, step=event.step, summary=summary_pb2.Summary(value=[value]))
