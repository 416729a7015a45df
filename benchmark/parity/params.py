"""Parameter parity table (docs/protocol.md §4): model x input size x classes, both frameworks.

    python -m benchmark.parity.params [--out FILE.csv]     (default: parity/parameter_counts.csv)

Counts come from the backends' own ``create_model`` and ``parameter_counts``. Like is
compared with like: Keras counts BatchNorm moving mean/variance as non-trainable
weights, PyTorch keeps them as buffers, so the table has both views:

- ``torch_trainable`` / ``keras_trainable``: trainable parameters;
  ``trainable_diff_pct`` = (keras - torch) / torch * 100;
- ``torch_buffers``: floating-point buffers (BatchNorm running mean/var; the integer
  ``num_batches_tracked`` is not a parameter and is left out);
- ``keras_non_trainable``: every non-trainable Keras weight (BatchNorm moving stats and
  anything else), ``keras_buffers``: the BatchNorm moving statistics among them;
- ``total_torch`` = trainable + frozen parameters + buffers, ``total_keras`` =
  ``model.count_params()``; ``total_diff_pct`` as above.

The PyTorch models are built on the ``meta`` device (shapes only, no memory, no
initialization cost); the Keras models one at a time (collected after each model's six variants).
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import sys
from pathlib import Path

from benchmark.backends import load_backend
from benchmark.files import atomic_write_text
from benchmark.spec.models import MODELS

SIZES = (32, 64)
CLASSES = (10, 100, 200)
COLUMNS = (
    "model",
    "input_size",
    "classes",
    "torch_trainable",
    "keras_trainable",
    "trainable_diff_pct",
    "torch_buffers",
    "keras_non_trainable",
    "keras_buffers",
    "total_torch",
    "total_keras",
    "total_diff_pct",
)
DEFAULT_OUT = Path("parity") / "parameter_counts.csv"


def _pct(new: int, ref: int) -> float:
    return (new - ref) / ref * 100.0 if ref else 0.0


def torch_counts(name: str, classes: int, size: int) -> dict[str, int]:
    # frameworks only when a table is asked for: importing benchmark.parity loads none
    import torch

    from benchmark.backends.pytorch.models import create_model, parameter_counts  # imports torchvision

    try:
        with torch.device("meta"):
            model = create_model(name, classes, size)
    except Exception:  # a torch without meta-device support for some init: build it for real
        model = create_model(name, classes, size)
    counts = parameter_counts(model)
    del model
    return counts


def keras_counts(name: str, classes: int, size: int) -> dict[str, int]:
    # Keras only after parameter_table has pinned its engine (load_backend)
    from benchmark.backends.keras.models import create_model, parameter_counts

    model = create_model(name, classes, size)
    counts = dict(parameter_counts(model), total=int(model.count_params()))
    del model  # clear_session()/gc per model would cost about a second each; parameter_table does it per model
    return counts


def table_row(name: str, size: int, classes: int) -> dict:
    t, k = torch_counts(name, classes, size), keras_counts(name, classes, size)
    total_torch = t["trainable"] + t["non_trainable"] + t["buffers"]
    return {
        "model": name,
        "input_size": size,
        "classes": classes,
        "torch_trainable": t["trainable"],
        "keras_trainable": k["trainable"],
        "trainable_diff_pct": round(_pct(k["trainable"], t["trainable"]), 4),
        "torch_buffers": t["buffers"],
        "keras_non_trainable": k["buffers"] + k["non_trainable"],
        "keras_buffers": k["buffers"],
        "total_torch": total_torch,
        "total_keras": k["total"],
        "total_diff_pct": round(_pct(k["total"], total_torch), 4),
    }


def parameter_table(models=MODELS, sizes=SIZES, classes=CLASSES) -> list[dict]:
    import torchvision  # noqa: F401  (before TensorFlow: triton's LLVM crashes after TensorFlow's)

    load_backend("keras")  # pins KERAS_BACKEND before keras is imported
    import keras

    rows: list[dict] = []
    for m in models:
        rows.extend(table_row(m, s, c) for s in sizes for c in classes)
        gc.collect()  # the Keras graphs hold reference cycles: free one model's worth at a time
    keras.backend.clear_session()
    return rows


def format_table(rows: list[dict]) -> str:
    """Fixed-width text of the table (what the command prints)."""

    def cell(key, value):
        if isinstance(value, float):
            return f"{value:+.3f}"
        if isinstance(value, int) and key not in ("input_size", "classes"):
            return f"{value:,}"
        return str(value)

    cells = [[cell(k, r[k]) for k in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(COLUMNS)]
    lines = [
        "  ".join(h.rjust(w) if i > 0 else h.ljust(w) for i, (h, w) in enumerate(zip(COLUMNS, widths, strict=True)))
    ]
    for c in cells:
        lines.append(
            "  ".join(v.rjust(w) if i > 0 else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True)))
        )
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> Path:
    """Write the table atomically: a temporary file in the same folder, then a rename."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.parity.params",
        description="Parameter counts of every model x input size x classes in PyTorch and Keras (CSV).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV file to write (default: {DEFAULT_OUT})")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, choices=SIZES, default=list(SIZES))
    parser.add_argument("--classes", nargs="+", type=int, default=list(CLASSES))
    args = parser.parse_args(argv)
    rows = parameter_table(args.models, args.sizes, args.classes)
    print(format_table(rows))
    path = write_csv(rows, args.out)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
