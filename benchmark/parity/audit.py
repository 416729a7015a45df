"""Cross-framework parity audit of one configuration (model x dataset x precision).

Every arm is a backend's real ``Trainer`` for the configuration, built without any
data (the trainers only see the class count, the input size and the normalization
constants), and the audit reads it only through its view of the contract
(benchmark.backends.contract.Introspection): nothing private, no patching, no source
reading. An arm built in a process of its own is read the same way, from its recorded
answers (benchmark.parity.recorded).

- **Declared**: each trainer's ``protocol_facts()`` (optimizer, update rule, weight
  decay, loss, LR stepping, precision, input normalization, BatchNorm, dropout, drop
  path, initializers, accumulation), compared as written.
- **Measured**: what only measurement shows: parameter counts and the layer table
  (kinds, biases, strides, padding, normalization), the output shape at every block
  boundary the model registries name (the same labels in every backend), the
  distribution of the initial weights (which initializer fits), and the trajectory
  of each optimizer on a probe vector under its own LR schedule.

What the tests already assert (LR per step, pixel equality of the pipelines, loss,
eval mode, the weight-decay step) stays in the tests. Each finding is one row:
category, item, one value per arm, same, impact, kind (``check`` for what is in
effect, ``info`` for context).
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from benchmark.backends import BACKENDS
from benchmark.backends.contract import Introspection, LayerInfo
from benchmark.parity import equivalence as eq
from benchmark.parity.arms import build_trainer, needs_own_process
from benchmark.parity.initializers import fit_initializer
from benchmark.parity.recorded import record_in_own_process
from benchmark.spec.models import stem_for
from benchmark.spec.protocol import Knobs
from benchmark.spec.schedule import Schedule

CATEGORIES = (
    "Declared protocol",
    "Parameters",
    "Layers",
    "Block shapes",
    "Initializers (measured)",
    "Update rule (measured)",
    "Numerical equivalence",
)
INTRO = {
    "Declared protocol": "What each trainer declares it implements (`Trainer.protocol_facts()`, written in the "
    "same canonical words by every backend), compared as written.",
    "Parameters": "Parameter counts of the two built models. Normalization statistics are counted as buffers in "
    "both (Keras keeps them as non-trainable weights).",
    "Layers": "The layer table of each built model (`Trainer.layers()`): weight and normalization layers in "
    "order, kernels in PyTorch's layout, padding as (top, bottom, left, right).",
    "Block shapes": "Feature-map shapes (C, H, W) after every block the model registries name, from a forward "
    "pass of one input (`Trainer.block_shapes()`).",
    "Initializers (measured)": "The initial weights of each layer family, matched to the candidate initializers "
    "by their standard deviation and distribution shape (excess kurtosis).",
    "Update rule (measured)": "Each trainer's optimizer rule (`Trainer.update_trajectory()`) on a probe vector fed "
    "the same random gradients under its own LR schedule.",
    "Numerical equivalence": "Under the aligned architecture (protocol=aligned): every arm's network with the same "
    "shared initial weights on the same batch, against the first arm, on the CPU "
    "(benchmark.parity.equivalence; docs/protocol.md §11). Relative difference: "
    "max|a - b| / max|a| per tensor, worst tensor reported.",
}
# Why a declared difference matters (shown only when the arms differ)
IMPACT = {
    "momentum_buffer": "identical whenever the LR is constant; under warmup and cosine one buffer carries gradients "
    "scaled by older LRs: smaller steps while the LR rises, larger while it falls (quantified "
    "under Update rule)",
    "dropout": "only one arm drops activations before the classifier in training: it is regularized more",
    "drop_path": "only one arm drops residual branches in training: it is regularized more and its training loss "
    "falls more slowly",
    "initializers": "different starting weight scales change the early training dynamics",
    "batchnorm": "the moving statistics follow the weights at different speeds: evaluation differs, mostly early",
    "float32_matmul": "on a GPU with TF32 units one arm rounds float32 matmul and convolution inputs to a 10-bit "
    "mantissa: its accuracy and speed are not those of the other's float32 (precision.matmul)",
    "determinism": "one arm may pick non-deterministic kernels: the same seed need not give the same numbers there",
}


@dataclass
class Finding:
    category: str
    item: str
    values: tuple[str, ...]  # one per arm, in the audit's arm order
    same: bool
    impact: str
    kind: str = "check"  # check: in effect in the benchmark; info: context, not in effect


def _row(
    category: str,
    item: str,
    values,
    impact_same: str,
    impact_differ: str,
    same: bool | None = None,
    kind: str = "check",
) -> Finding:
    values = tuple(str(v) for v in values)
    same = len(set(values)) == 1 if same is None else same
    return Finding(category, item, values, same, impact_same if same else impact_differ, kind)


@contextlib.contextmanager
def _preserved_rng():
    """Trainers seed the process-wide RNGs: put Python's and NumPy's back afterwards."""
    py, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)


def _process_order(name_and_cfg) -> int:
    # torchvision must load before TensorFlow in one process (triton's LLVM)
    return list(BACKENDS).index(name_and_cfg[1].framework.name)


def build_arms(configs: dict, schedule: Schedule) -> dict[str, Introspection]:
    """One trainer per arm ({arm name: composed config of that arm}), in the order given;
    an arm whose engine needs a process of its own is built there and recorded
    (benchmark.parity.recorded)."""
    built: dict[str, Introspection] = {}
    for name, cfg in sorted(configs.items(), key=_process_order):
        cfg = cfg.copy()
        cfg.framework.deterministic = False  # determinism is a property of kernels; leave the process flags alone
        if needs_own_process(name):
            built[name] = record_in_own_process(cfg, schedule, _probe_gradients(probe_steps(schedule)))
        else:
            built[name] = build_trainer(cfg, schedule)
    return {name: built[name] for name in configs}


# ------------------------------------------------------------------ checks


def check_declared(arms: dict[str, Introspection]) -> list[Finding]:
    facts = [trainer.protocol_facts().items() for trainer in arms.values()]
    return [
        _row(
            "Declared protocol",
            field.replace("_", " "),
            [dict(f)[field] for f in facts],
            "same",
            IMPACT.get(field, "the arms implement this differently"),
        )
        for field, _ in facts[0]
    ]


def check_parameters(arms: dict[str, Introspection]) -> list[Finding]:
    counts = [trainer.parameter_counts() for trainer in arms.values()]
    rows = []
    for key, label in (
        ("trainable", "trainable parameters"),
        ("buffers", "normalization statistics (buffers)"),
        ("non_trainable", "other non-trainable weights"),
    ):
        values = [c[key] for c in counts]
        extra = values[-1] - values[0]
        rows.append(
            _row(
                "Parameters",
                label,
                [f"{v:,}" for v in values],
                "identical",
                f"{extra:+,} ({extra / max(values[0], 1) * 100:+.3f}%) against the first arm; see Layers "
                "for where they come from",
            )
        )
    return rows


def _pad(p) -> str:
    if p is None:
        return "input-dependent"
    top, bottom, left, right = p
    return str(top) if top == bottom == left == right else f"{top}/{bottom}/{left}/{right}"


def _counted(counter: Counter) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(counter.items())) or "none"


def check_layers(tables: list[list[LayerInfo]]) -> list[Finding]:
    weights = [[x for x in t if x.kind in ("conv", "depthwise conv", "dense")] for t in tables]
    convs = [[x for x in w if x.kind != "dense"] for w in weights]
    stems = [c[0] for c in convs]
    strided = [[x for x in c if x.stride > 1] for c in convs]
    asymmetric = [
        [x.name for x in s if x.padding is None or x.padding[0] != x.padding[1] or x.padding[2] != x.padding[3]]
        for s in strided
    ]
    norms = [Counter(f"{x.kind} eps {x.eps:g}" for x in t if x.kind in ("batchnorm", "layernorm")) for t in tables]
    return [
        _row(
            "Layers",
            "weight layers by kind",
            [_counted(Counter(x.kind for x in w)) for w in weights],
            "one-to-one in count and kind",
            "different layer counts: the networks are not the same",
        ),
        _row(
            "Layers",
            "stem convolution",
            [f"{s.shape[2]}x{s.shape[3]}, stride {s.stride}, padding {_pad(s.padding)}" for s in stems],
            "the docs/protocol.md §4 stem in every arm",
            "the first feature maps are computed differently",
        ),
        _row(
            "Layers",
            "strided convolutions (kernel / stride)",
            [_counted(Counter(f"{x.shape[2]}x{x.shape[3]}/{x.stride}" for x in s)) for s in strided],
            "the networks downsample in the same layers",
            "the networks downsample in different layers (ResNet50: v1 puts the stride in the first 1x1 conv "
            "of a block, v1.5 in the 3x3; NVIDIA reports v1.5 ~0.5 pt more ImageNet top-1 at ~5% lower speed)",
        ),
        _row(
            "Layers",
            "padding of strided convolutions",
            [
                f"{len(s)} strided; asymmetric: {', '.join(a) or 'none'}"
                for s, a in zip(strided, asymmetric, strict=True)
            ],
            "symmetric everywhere" if not any(asymmetric) else "same",
            "TensorFlow's 'same' at stride 2 pads the extra row/column at the bottom/right only: those layers "
            "sample windows shifted by one pixel",
            same=not any(asymmetric),
        ),
        _row(
            "Layers",
            "convolution biases",
            [f"{sum(1 for x in c if x.bias)} of {len(c)} convs ({sum(x.bias for x in c):,} values)" for c in convs],
            "same",
            "extra biases before a normalization layer are functionally redundant but trained and "
            "weight-decayed; they are the parameter difference above",
        ),
        _row(
            "Layers",
            "normalization layers",
            [_counted(n) for n in norms],
            "same kinds, counts and eps",
            "the layers normalize differently",
        ),
    ]


def check_block_shapes(arms: dict[str, Introspection], model: str, image_size: int) -> list[Finding]:
    shapes = [dict(trainer.block_shapes()) for trainer in arms.values()]
    labels = list(dict.fromkeys(label for s in shapes for label in s))
    rows = [
        _row(
            "Block shapes",
            label,
            [str(s.get(label, "missing")) for s in shapes],
            "same shape",
            "shapes differ: the arms are not the same network here",
        )
        for label in labels
    ]
    final = stem_for(model, image_size).final_map
    maps = [next(v for v in reversed(list(s.values())) if len(v) == 3) for s in shapes]  # (C, H, W)
    rows.insert(
        0,
        _row(
            "Block shapes",
            "final feature map before global pooling",
            maps,
            f"{final}x{final} in every arm, as the stems of docs/protocol.md §4 intend",
            f"docs/protocol.md §4 expects {final}x{final} before pooling",
            same=all(m[1:] == (final, final) for m in maps) and len(set(maps)) == 1,
        ),
    )
    return rows


def check_initializers(tables: list[list[LayerInfo]]) -> list[Finding]:
    def families(table):
        dense = [x for x in table if x.kind == "dense"]
        found = {
            "conv": [x for x in table if x.kind == "conv"],
            "depthwise conv": [x for x in table if x.kind == "depthwise conv"],
            "dense (inside blocks)": dense[:-1],
            "dense (classifier head)": dense[-1:],
        }
        return {k: v for k, v in found.items() if v}

    fams = [families(t) for t in tables]
    rows = []
    for family in dict.fromkeys(f for fam in fams for f in fam):
        fits = [fit_initializer([(x.kernel, *x.fans) for x in fam.get(family, [])]) for fam in fams]
        kernels = [[x.kernel for x in fam.get(family, [])] for fam in fams]
        # shared initial weights (protocol.init=aligned): the same numbers, whatever fan
        # convention each framework would name them by
        identical = all(
            len(k) == len(kernels[0])
            and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(k, kernels[0], strict=True))
            for k in kernels
        )
        texts = [("identical values in every arm; " if identical else "") + f["text"] for f in fits]
        rows.append(
            _row(
                "Initializers (measured)",
                f"{family} weights",
                texts,
                "same scheme",
                IMPACT["initializers"],
                same=identical or len({f["id"] for f in fits}) == 1,
            )
        )
    return rows


UPDATE_RULE_TOLERANCE = 1e-5


def _probe_gradients(steps: int, dim: int = 32) -> np.ndarray:
    """Column 0: a constant gradient of 1; the rest: i.i.d. standard normal (seed 0)."""
    g = np.random.default_rng(0).standard_normal((steps, dim + 1))
    g[:, 0] = 1.0
    return g


def probe_steps(schedule: Schedule) -> int:
    # eager optimizer steps cost ~1-2 ms: the whole warmup when it is short enough
    return max(2, min(schedule.total_steps, max(400, schedule.warmup_steps + 1), 2000))


def check_update_rule(arms: dict[str, Introspection], schedule: Schedule) -> list[Finding]:
    steps = probe_steps(schedule)
    grads = _probe_gradients(steps)
    paths = [trainer.update_trajectory(grads) for trainer in arms.values()]
    ref = paths[0]
    norm = np.linalg.norm(ref[:, 1:], axis=1)
    w_end = min(max(schedule.warmup_steps - 1, 0), steps - 1)
    values, worst = [], 0.0
    for path in paths:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(norm > 0, np.linalg.norm(path[:, 1:] - ref[:, 1:], axis=1) / norm, np.nan)
            const = path[:, 0] / np.where(ref[:, 0] != 0, ref[:, 0], np.nan) - 1
        worst = max(worst, float(np.nanmax(rel)), float(np.nanmax(np.abs(const))))
        values.append(
            "reference"
            if path is ref
            else f"max {np.nanmax(rel):.3g} (step {int(np.nanargmax(rel))}), end of warmup (step {w_end}) "
            f"{rel[w_end]:.3g}, step {steps - 1} {rel[-1]:.3g}; constant gradient: distance travelled "
            f"{const[w_end] * 100:+.2f}% at the end of warmup, {const[-1] * 100:+.2f}% at step {steps - 1}"
        )
    # float32 arithmetic of an optimizer against a float64 reference stays near 1e-7
    same = worst <= UPDATE_RULE_TOLERANCE
    return [
        _row(
            "Update rule (measured)",
            f"trajectory difference against the first arm ({steps} steps)",
            values,
            "the same update rule in every arm",
            "||w - w_first|| / ||w_first|| on a 32-d probe fed the same gradients under each arm's own LR "
            "schedule; the constant-gradient figure is the systematic part (negative: that arm moves less)",
            same=same,
        )
    ]


def check_equivalence(arms: dict, model: str, image_size: int) -> list[Finding]:
    """Every arm's probe against the first arm's (Keras on another engine: in a process of its own)."""
    rows = eq.check(model, image_size, backends=tuple(arms))
    category = "Numerical equivalence"
    findings = []

    def add(item, values, same, impact_same, impact_differ, kind="check"):
        findings.append(_row(category, item, ["reference", *values], impact_same, impact_differ, same=same, kind=kind))

    by_dtype = {dtype: [r for r in rows if r.dtype == dtype] for dtype in ("float32", "float64")}
    f32 = by_dtype["float32"]
    add(
        "float32: eval logits, max relative (absolute) difference",
        [f"{r.logits_max_rel:.1e} ({r.logits_max_abs:.1e})" for r in f32],
        all(r.logits_max_rel <= eq.TOLERANCE for r in f32),
        f"within {eq.TOLERANCE:g}: the same function",
        "the networks compute different functions: a layer, stride, padding or weight is mapped wrongly",
    )
    add(
        "float32: training-mode loss, relative difference",
        [f"{r.loss_rel:.1e}" for r in f32],
        all(r.loss_rel <= eq.TOLERANCE for r in f32),
        f"within {eq.TOLERANCE:g}",
        "the training forward differs",
    )
    add(
        "float32: gradients, max relative difference (worst tensor)",
        [f"{r.grad_max_rel:.1e} ({r.grad_worst}); float32 floor {r.grad_floor:.1e}" for r in f32],
        all(r.passed for r in f32),
        "within the float32 floor (the first arm's own float32 gradients against its float64 ones)",
        "the backward passes differ beyond float32 rounding",
    )
    add(
        "float32: weights after one SGD step, max relative difference",
        [f"{r.weights_max_rel:.1e} (update {r.update_max_rel:.1e})" for r in f32],
        True,
        "follows the gradients (float32 rounding of the backward pass)",
        "",
        kind="info",
    )
    f64 = by_dtype["float64"]
    if f64:
        add(
            "float64: gradients and one-step weights, max relative difference",
            [
                f"gradients {r.grad_max_rel:.1e}, weights {r.weights_max_rel:.1e}, logits {r.logits_max_rel:.1e}"
                for r in f64
            ],
            all(r.passed for r in f64),
            f"within {eq.FLOAT64_TOLERANCE:g}: the same mathematics",
            "the arms differ beyond rounding: the mapping or the update rule is not the same",
        )
    add(
        "BatchNorm running statistics after one step, max relative difference",
        [f"{r.statistics_max_rel:.1e}" for r in f32],
        True,
        "PyTorch updates the running variance with the unbiased batch variance (x n/(n-1)), Keras with the "
        "biased one: a difference of the frameworks, not of the zoo",
        "",
        kind="info",
    )
    return findings


def audit(configs: dict, schedule: Schedule) -> tuple[list[str], list[Finding]]:
    """(arm names, every finding) for one configuration composed once per arm."""
    with _preserved_rng():
        arms = build_arms(configs, schedule)
        cfg = next(iter(configs.values()))
        tables = [trainer.layers() for trainer in arms.values()]  # copies every kernel: once per arm
        findings = [
            *check_declared(arms),
            *check_parameters(arms),
            *check_layers(tables),
            *check_block_shapes(arms, cfg.model.name, int(cfg.dataset.image_size)),
            *check_initializers(tables),
            *check_update_rule(arms, schedule),
        ]
        if Knobs.of(cfg.get("protocol")).architecture:
            findings += check_equivalence(arms, cfg.model.name, int(cfg.dataset.image_size))
    return list(arms), findings
