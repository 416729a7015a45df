"""The numerical-equivalence check of the aligned protocol (docs/protocol.md §11).

Proof that under ``protocol=aligned`` only the framework is left: every backend builds
the model with the aligned architecture and regularization off, loads the same shared
initial weights (benchmark.spec.models.shared_initial_weights) through its layer mapping,
and runs one probe (``ModelRegistry.equivalence_probe``, benchmark.parity.probe) on the
same batch, on the CPU in float32. Compared with the first backend (the reference):

- eval-mode logits: max absolute and max relative difference;
- the training-mode loss (batch statistics), relative difference;
- the gradients: max relative difference over the parameters (and which one);
- the weights after one step of the aligned SGD rule, and the update itself
  (weights after − before), max relative difference over the parameters;
- the normalization statistics after that step (reported; see below).

A relative difference of two tensors is max|a − b| / max|a| (the reference's largest
magnitude), so a tensor of tiny values is judged on its own scale. The check passes
when logits, loss and one-step weights agree within TOLERANCE and the gradients and
updates within GRADIENT_TOLERANCE; a broken mapping (a kernel in the wrong layout, a
changed stride) misses these by orders of magnitude (tests/test_equivalence.py).

BatchNorm's running variance is not held to a tolerance: PyTorch updates it with the
unbiased batch variance (n / (n − 1)), Keras with the biased one, a difference of the
frameworks themselves (docs/parity.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmark import BenchmarkError
from benchmark.backends import BACKENDS
from benchmark.files import atomic_write_text
from benchmark.parity.arms import needs_own_process

# build: the tests hand check() models built here, some deliberately broken (tests/test_aligned.py)
from benchmark.parity.probe import build, probes  # noqa: F401
from benchmark.parity.recorded import probe_in_own_process
from benchmark.spec.models import MODELS

TOLERANCE = 1e-4  # float32: logits and loss
# float32 gradients of these networks are themselves only accurate to about 1e-2 (the
# reference framework's float32 against its own float64: ResNet50 0.11 max relative),
# so in float32 they must agree within FLOOR_FACTOR x that floor (or GRADIENT_TOLERANCE)
GRADIENT_TOLERANCE = 1e-3
FLOOR_FACTOR = 4.0
FLOAT64_TOLERANCE = 1e-8  # float64: logits, loss, gradients and one-step weights
NEGLIGIBLE = 1e-4
SIZES = (32, 64)
STATISTICS = ("running_mean", "running_var")


@dataclass
class Equivalence:
    model: str
    image_size: int
    dtype: str
    reference: str
    other: str
    logits_max_abs: float
    logits_max_rel: float
    loss_reference: float
    loss_other: float
    loss_rel: float
    grad_max_rel: float
    grad_worst: str
    grad_floor: float  # float32 rows: the reference's float32 gradients against its float64 ones
    weights_max_rel: float
    update_max_rel: float
    update_worst: str
    statistics_max_rel: float
    passed: bool


def relative(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """max|a − b| / max(max|a|, floor): relative to the reference's largest magnitude, but
    never to less than `floor` (0 when both are all zero)."""
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, floor)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _worst(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys) -> tuple[float, str]:
    """The largest relative difference over the tensors `keys`, and which tensor. A tensor
    whose values all lie below NEGLIGIBLE x the largest value of any tensor is judged
    against that level: such a gradient is zero in exact arithmetic (the shift of a
    BatchNorm that feeds another BatchNorm), and its digits are rounding in any framework."""
    missing = [k for k in keys if k not in b]
    if missing:
        return float("inf"), f"{missing[0]} missing"
    keys = list(keys)
    if not keys:
        return 0.0, ""
    floor = NEGLIGIBLE * max(float(np.max(np.abs(a[k]))) for k in keys)
    values = {k: relative(a[k], b[k], floor) if a[k].shape == b[k].shape else float("inf") for k in keys}
    key = max(values, key=values.__getitem__)
    return values[key], key


def compare(
    model: str, image_size: int, dtype: str, ref, other, weights: dict, reference: str, name: str, floor: float
) -> Equivalence:
    """One row: `other`'s probe against the reference backend's."""
    params = list(ref.grads)
    stats = [k for k in ref.weights_after if k.rsplit(".", 1)[-1] in STATISTICS]
    same_shape = ref.logits_eval.shape == other.logits_eval.shape
    logits_rel = relative(ref.logits_eval, other.logits_eval) if same_shape else float("inf")
    logits_abs = float(np.max(np.abs(ref.logits_eval - other.logits_eval))) if same_shape else float("inf")
    grad_rel, grad_worst = _worst(ref.grads, other.grads, params)
    weights_rel, _ = _worst(ref.weights_after, other.weights_after, params)
    ref_update = {k: ref.weights_after[k] - weights[k] for k in params}
    update = {k: other.weights_after[k] - weights[k] for k in params if k in other.weights_after}
    update_rel, update_worst = _worst(ref_update, update, params)
    stats_rel, _ = _worst(ref.weights_after, other.weights_after, stats)
    loss_rel = abs(ref.loss_train - other.loss_train) / abs(ref.loss_train)
    if dtype == "float64":  # no rounding to hide behind: everything must agree
        passed = max(logits_rel, loss_rel, grad_rel, weights_rel) <= FLOAT64_TOLERANCE
    else:  # the gradients only as well as float32 lets the reference compute its own
        passed = (
            logits_rel <= TOLERANCE
            and loss_rel <= TOLERANCE
            and grad_rel <= max(GRADIENT_TOLERANCE, FLOOR_FACTOR * floor)
        )
    return Equivalence(
        model,
        image_size,
        dtype,
        reference,
        name,
        logits_abs,
        logits_rel,
        ref.loss_train,
        other.loss_train,
        loss_rel,
        grad_rel,
        grad_worst,
        floor,
        weights_rel,
        update_rel,
        update_worst,
        stats_rel,
        passed,
    )


def check(
    model: str,
    image_size: int,
    backends: tuple[str, ...] | None = None,
    models: dict | None = None,
    seed: int = 0,
    float64: bool | None = None,
) -> list[Equivalence]:
    """Every backend against the first one for `model` at `image_size`. `models` may hand
    in float32 models already built (the tests give a deliberately broken one).

    Float32 first. Its gradients decide only as far as float32 lets the reference
    compute its own: that floor is the reference's float32 gradients against its
    float64 ones. Where the floor is above GRADIENT_TOLERANCE (BatchNorm networks on a
    small batch), every backend runs the probe again in float64, where the frameworks
    must agree to FLOAT64_TOLERANCE; `float64` forces (True) or skips (False) that."""
    names = list(backends or BACKENDS)  # BACKENDS order: torchvision loads before TensorFlow
    here = [name for name in names if not needs_own_process(name)]  # the reference among them
    away = [name for name in names if needs_own_process(name)]
    found32, weights = probes(model, image_size, here, "float32", models, seed=seed)
    ref64, _ = probes(model, image_size, names[:1], "float64", weights=weights, seed=seed)
    floor = _worst(ref64[names[0]].grads, found32[names[0]].grads, list(found32[names[0]].grads))[0]
    want64 = bool(float64 or (float64 is None and floor > GRADIENT_TOLERANCE))
    found64 = probes(model, image_size, here[1:], "float64", None, weights, seed)[0] if want64 else {}
    for name in away:  # Keras on another engine: the same probe, weights and batch, in a process of its own
        got = probe_in_own_process(model, image_size, name, weights, seed, want64)
        found32[name], found64[name] = got["float32"], got.get("float64")
    rows = [
        compare(model, image_size, "float32", found32[names[0]], found32[name], weights, names[0], name, floor)
        for name in names[1:]
    ]
    if want64:
        rows += [
            compare(model, image_size, "float64", ref64[names[0]], found64[name], weights, names[0], name, 0.0)
            for name in names[1:]
        ]
    return rows


def table(models=MODELS, sizes=SIZES) -> list[Equivalence]:
    return [row for m in models for s in sizes for row in check(m, s)]


def markdown(rows: list[Equivalence]) -> str:
    head = (
        "| model | size | dtype | arms | logits max abs | logits max rel | loss rel | gradients max rel (worst) | "
        "float32 floor | one-step weights max rel | update max rel | BN statistics max rel | passed |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        floor = f"{r.grad_floor:.1e}" if r.dtype == "float32" else ""
        lines.append(
            f"| {r.model} | {r.image_size} | {r.dtype} | {r.other} vs {r.reference} | {r.logits_max_abs:.1e} | "
            f"{r.logits_max_rel:.1e} | {r.loss_rel:.1e} | {r.grad_max_rel:.1e} ({r.grad_worst}) | {floor} | "
            f"{r.weights_max_rel:.1e} | {r.update_max_rel:.1e} | {r.statistics_max_rel:.1e} | "
            f"{'yes' if r.passed else 'NO'} |"
        )
    return "\n".join(lines)


def write_csv(rows: list[Equivalence], path: Path) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    atomic_write_text(path, buffer.getvalue())  # a fresh name, renamed: never through a planted link
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.parity.equivalence",
        description="Numerical-equivalence check of the aligned protocol: every backend against the first, "
        "same weights, same batch, fp32 on the CPU (docs/protocol.md §11).",
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--out", type=Path, default=Path("parity"), help="directory for equivalence.csv")
    args = parser.parse_args(argv)
    try:
        rows = table(args.models, args.sizes)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows))
    print(f"-> {write_csv(rows, args.out / 'equivalence.csv')}")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
