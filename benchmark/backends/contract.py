"""The contracts every backend implements, as types: the run loop, ``benchmark.perf``
and the parity audit use these and nothing else of a backend.

Each consumer has its own Protocols, holding exactly what it calls:

- the run loop (benchmark.run.loop): :class:`Trainer` of a trainer, :class:`Backend` of
  a backend module;
- the parity audit (benchmark.parity.audit): :class:`Introspection`, :class:`AuditBackend`;
- benchmark.perf: :class:`Yardstick`, :class:`PerfBackend`;
- the numerical-equivalence check (benchmark.parity.equivalence): :class:`ModelRegistry`
  of a backend module.

A backend is a module ``benchmark.backends.<name>`` on each of its engines (registered in
``benchmark.backends.MODULES``) that satisfies all of them (:class:`BackendModule`); its
``Trainer`` builds an object that satisfies every trainer view (:class:`BackendTrainer`).
Framework-neutral: no framework is imported here.

What a trainer *declares* (:class:`ProtocolFacts`) is compared between arms by the
parity audit as written; what only measurement shows (the optimizer's trajectory on a
probe, initial weight distributions, block output shapes, the layer table) the audit
measures through the other methods of :class:`Introspection`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

# progress(step, steps, running_mean_loss) is called a few times per epoch.
Progress = Callable[[int, int, float], None]
T = TypeVar("T")  # the trainer as one consumer sees it


@dataclass
class EpochStats:
    loss: float  # mean training loss over the epoch's images
    accuracy: float  # training accuracy (augmented images, train mode)
    seconds: float  # training time only, accelerator work included
    images: int  # images trained on
    steps: int  # optimizer steps


@dataclass(frozen=True)
class ProtocolFacts:
    """What a trainer implements, in canonical words, so that two arms that implement
    the same fact write the same text (the audit compares them as strings)."""

    optimizer: str  # "SGD(momentum=0.9, nesterov=True, dampening=0)"
    momentum_buffer: str  # where the LR enters the momentum buffer (the update rule)
    weight_decay: str  # "coupled L2 1e-04 on every trainable variable (through momentum)"
    loss: str  # "softmax cross-entropy on logits, mean over the batch, no label smoothing"
    lr_stepping: str  # "per optimizer step"
    precision: str  # "float32" | "bfloat16 autocast, no loss scaling" | ...
    input_normalization: str  # "(x / 255 - mean) / std, mean [...], std [...]"
    batchnorm: str  # "momentum 0.1 (weight of the new batch), eps 1e-05" or "none"
    dropout: str  # "p=0.2 before the classifier" or "none"
    drop_path: str  # "p=0.1, linear over 18 blocks, per sample" or "none"
    initializers: str  # per layer family
    accumulation: str  # "micro-batch 32 x 1 step"
    data_stream: str  # where the shuffle order, crops and flips come from
    # float32 arithmetic on the device (precision.matmul; docs/protocol.md §8): "ieee: TF32 off ..."
    float32_matmul: str
    # framework.deterministic as enforced: "enforced: ..." | "off: ..."
    determinism: str

    def items(self) -> list[tuple[str, str]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True)
class LayerInfo:
    """One weight-carrying or normalization layer, described the same way by every
    backend (shapes in PyTorch's layout: out, in, kh, kw)."""

    name: str
    kind: str  # "conv" | "depthwise conv" | "dense" | "batchnorm" | "layernorm"
    shape: tuple[int, ...]  # of the kernel (conv/dense) or of the scale (normalization)
    stride: int = 1
    padding: tuple[int, int, int, int] | None = (0, 0, 0, 0)  # top, bottom, left, right; None: input-dependent
    bias: int = 0  # bias values (0: no bias)
    momentum: float | None = None  # normalization: weight of the new batch (PyTorch's convention)
    eps: float | None = None
    kernel: np.ndarray | None = None  # initial values as built (out, in, kh, kw), for initializer fits
    fans: tuple[int, int] = (0, 0)  # fan_in, fan_out of the kernel


@dataclass
class Probe:
    """One framework's numbers on the numerical-equivalence probe (benchmark.parity.equivalence):
    tensors by torchvision state_dict name, in torchvision's layout."""

    logits_eval: np.ndarray  # (n, classes), evaluation mode, the initial weights
    loss_train: float  # training mode (batch statistics), regularization off
    grads: dict[str, np.ndarray]  # d loss_train / d parameter, before weight decay
    weights_after: dict[str, np.ndarray]  # parameters and statistics after one optimizer step


# ------------------------------------------------------------------ per trainer
# One Protocol per consumer, holding only what that consumer calls: a consumer can then be
# served by anything that answers its questions (the audit reads recorded answers from a
# child process through Introspection), and a change to what one consumer needs shows
# which backend methods it touches. A backend's Trainer class implements all of them
# (BackendTrainer). runtime_checkable checks names only; tests/test_contract.py calls
# every member of every Protocol on every framework option.


@runtime_checkable
class Trainer(Protocol):
    """The run loop's view (benchmark.run.loop): one run's model, optimizer, schedule and
    input pipeline, trained epoch by epoch, evaluated, checkpointed."""

    mode: str  # the graph/compile mode it runs in ("eager", "tf.function+xla", ...)
    device: Any  # where it computes (str() names it for env.json)

    def train_epoch(self, epoch: int, progress: Progress) -> EpochStats:
        """One pass over the training batches, augmentation on."""

    def predict(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """(mean loss, predicted labels) in evaluation mode."""

    def save(self, kind: str, meta: dict) -> None:
        """The ``best`` or ``last`` checkpoint in the framework's own format; ``last``
        holds everything a resume needs (optimizer, schedule, loss scale, RNG, data order)."""

    def restore(self, kind: str) -> dict | None:
        """Load a checkpoint saved by ``save``; its meta, or None when there is none."""

    def peak_memory(self) -> dict:
        """{"accelerator_peak_bytes": int | None}"""

    def settings_in_force(self) -> dict:
        """{"float32_policy": float32_record(...), "determinism": determinism_record(...)}:
        what the framework reports back of precision.matmul and framework.deterministic
        once the trainer has applied them (env.json)."""


@runtime_checkable
class Introspection(Protocol):
    """The parity audit's view (benchmark.parity.audit): what a trainer declares and what
    only measurement of its built model and optimizer shows. benchmark.parity.recorded
    implements it too, from answers recorded in another process."""

    def protocol_facts(self) -> ProtocolFacts:
        """What this trainer implements (compared between arms by the parity audit)."""

    def layers(self) -> list[LayerInfo]:
        """The model's weight and normalization layers in order, as built."""

    def block_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(label, (C, H, W)) at every block boundary the model registry names, from a
        forward pass of one input; labels are the same in every backend."""

    def parameter_counts(self) -> dict[str, int]:
        """{"trainable", "non_trainable", "buffers"} (normalization statistics are buffers)."""

    def update_trajectory(self, grads: np.ndarray) -> np.ndarray:
        """The weights of a zero-initialized probe vector after each step of this trainer's
        optimizer rule (same class, settings and LR schedule, no weight decay) fed `grads`
        (steps x dim, float64); one row per step."""


@runtime_checkable
class Yardstick(Protocol):
    """benchmark.perf's view: the harness's training epoch against the framework's own
    least training loop, in the same process, on the same device."""

    mode: str
    device: Any

    def train_epoch(self, epoch: int, progress: Progress) -> EpochStats:
        """As Trainer.train_epoch: the harness side of the ratio."""

    def bare_loop(self, images: np.ndarray, labels: np.ndarray) -> Callable[[int], None]:
        """A function running n of the least training steps the framework can take on
        this one fixed batch (same model, batch, precision, device, weight decay),
        waiting for the device before it returns: the yardstick of benchmark.perf."""


@runtime_checkable
class BackendTrainer(Trainer, Introspection, Yardstick, Protocol):
    """What a backend's ``Trainer(cfg, data, schedule, checkpoint_dir)`` builds: one object
    that every consumer reads through its own view."""


# (cfg, data, schedule, checkpoint_dir) -> the trainer, as each consumer sees it
TrainerFactory = Callable[[Any, Any, Any, Path], T]


# ------------------------------------------------------------------ per backend module
# Module-level parts, split by consumer in the same way. The factory is a read-only
# property so that each consumer's Protocol may name its own view of what it returns.


@runtime_checkable
class Backend(Protocol):
    """The run loop's view of a backend module."""

    @property
    def Trainer(self) -> TrainerFactory[Trainer]: ...

    def environment(self) -> dict:
        """Framework and accelerator versions for env.json."""


@runtime_checkable
class AuditBackend(Protocol):
    """The parity audit's view of a backend module: it builds trainers without data and
    introspects them."""

    @property
    def Trainer(self) -> TrainerFactory[Introspection]: ...


@runtime_checkable
class PerfBackend(Protocol):
    """benchmark.perf's view of a backend module: the input pipeline alone, and trainers
    to time against their bare loops."""

    @property
    def Trainer(self) -> TrainerFactory[Yardstick]: ...

    def input_pipeline(
        self, images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int
    ) -> Iterable:
        """The training batches (augmented, normalized) of one epoch, on the backend's device."""

    def synchronize(self) -> None:
        """Wait for the accelerator (a no-op on the CPU)."""


@runtime_checkable
class ModelRegistry(Protocol):
    """The numerical-equivalence check's view of a backend module
    (benchmark.parity.equivalence): its models, addressed by torchvision's tensor names,
    and the probe it runs on them."""

    def create_model(self, name: str, num_classes: int, image_size: int, **options) -> Any:
        """The model registry (drop_rate, drop_path_rate, init, architecture, dtype)."""

    def canonical_shapes(self, model: Any, name: str) -> dict[str, tuple[int, ...]]:
        """Shapes of every tensor of an aligned-architecture model by torchvision name and layout."""

    def load_canonical(self, model: Any, name: str, state: dict[str, np.ndarray]) -> None:
        """Copy tensors given by torchvision name and layout into the model."""

    def equivalence_probe(
        self,
        model: Any,
        name: str,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
    ) -> Probe:
        """The model's numbers on one normalized NHWC float32 batch, on the CPU in float32:
        eval logits, training loss and gradients, then one step of the aligned SGD rule
        (PyTorch's, coupled L2)."""


@runtime_checkable
class BackendModule(Backend, AuditBackend, PerfBackend, ModelRegistry, Protocol):
    """What a backend module implements: every consumer's view (benchmark.backends.load_backend
    refuses a module that misses a name of it)."""

    @property
    def Trainer(self) -> TrainerFactory[BackendTrainer]: ...


# ------------------------------------------------------------------ canonical wording
# Both backends word their ProtocolFacts with these, so equal facts are equal strings.


def precision_fact(reduced_dtype: str | None, loss_scaling: bool) -> str:
    if reduced_dtype is None:
        return "float32"
    return f"{reduced_dtype} compute, float32 weights, " + (
        "dynamic loss scaling" if loss_scaling else "no loss scaling"
    )


def normalization_fact(mean, std) -> str:
    def rounded(values) -> str:
        return "[" + ", ".join(f"{float(v):.4f}" for v in np.ravel(values)) + "]"

    return f"(x / 255 - mean) / std, mean {rounded(mean)}, std {rounded(std)}"


def batchnorm_fact(layers: list[LayerInfo]) -> str:
    combos: dict[tuple, int] = {}
    for layer in layers:
        if layer.kind == "batchnorm":
            key = (round(layer.momentum, 9) if layer.momentum is not None else None, layer.eps)
            combos[key] = combos.get(key, 0) + 1
    return (
        "; ".join(f"momentum {m:g} (weight of the new batch), eps {e:g} ({n} layers)" for (m, e), n in combos.items())
        or "none"
    )


def dropout_fact(rate: float) -> str:
    return f"p={rate:g} before the classifier" if rate else "none"


def drop_path_fact(rate: float) -> str:
    return f"p={rate:g} at the last block, linear in depth from 0, per sample" if rate else "none"


def optimizer_fact(momentum: float, nesterov: bool) -> str:
    return f"SGD(momentum={momentum:g}, nesterov={nesterov}, dampening=0)"


def momentum_buffer_fact(lr_in_buffer: bool, nesterov: bool) -> str:
    """The SGD update rule: PyTorch's (LR applied where the buffer is used) or Keras' (LR
    folded into the buffer as the gradient enters it)."""
    if not lr_in_buffer:
        return (
            "b = m*b + g; w -= lr*(g + m*b)" if nesterov else "b = m*b + g; w -= lr*b"
        ) + " (LR applied where the buffer is used; b = g at the first step)"
    return (
        "v = m*v - lr*g; w += m*v - lr*g" if nesterov else "v = m*v - lr*g; w += v"
    ) + " (LR folded into the buffer when the gradient enters it)"


def weight_decay_fact(weight_decay: float) -> str:
    return f"coupled L2 {weight_decay:g} on every trainable variable (added to the gradient, through momentum)"


SHARED_INIT_FACT = (
    "shared: torchvision's rules drawn from the seed by benchmark.spec.models.shared_initial_weights, "
    "copied in through the layer mapping (identical values in every arm)"
)
SHARED_STREAM_FACT = "shared: order, crops and flips drawn from (seed, epoch) by benchmark.data.stream"

LOSS_FACT = "softmax cross-entropy on logits, mean over the batch, label smoothing 0"
LR_STEPPING_FACT = "per optimizer step (benchmark.spec.schedule.Schedule)"


# precision.matmul (benchmark.spec.config.FLOAT32_POLICIES): what float32 matmuls and
# convolutions compute on an accelerator with TF32 units (Ampere and later)
FLOAT32_MEANING = {
    "ieee": "TF32 off: float32 matmuls and convolutions in full float32",
    "tf32": "TF32 on: float32 matmuls and convolutions with 10-bit mantissa inputs",
}


def float32_fact(policy: str, device: str, tf32_on: dict[str, bool | None]) -> str:
    """The float32 arithmetic a trainer runs, in the same words for every framework.
    `tf32_on`: what the framework reports back per kind of kernel ("matmul", "conv"; None
    where it has no such switch). On a CPU there are no TF32 units: not applicable."""
    if device != "cuda":
        return f"{policy} requested; not applicable on {device} (no TF32 units): float32 matmuls and convolutions"
    wanted = policy == "tf32"
    wrong = sorted(kind for kind, on in tf32_on.items() if on is not None and on != wanted)
    if wrong:
        state = "on" if not wanted else "off"
        return f"{policy} requested, but the framework reports TF32 {state} for {', '.join(wrong)}"
    return f"{policy}: {FLOAT32_MEANING[policy]}"


def float32_record(policy: str, device: str, switches: dict) -> dict:
    """env.json's ``float32_policy``: what the run asked for, whether it applies on this
    device, and the framework's own switches as it reports them back."""
    return {
        "requested": policy,
        "device": device,
        "in_effect": policy if device == "cuda" else f"not applicable (no TF32 units on the {device})",
        "switches": switches,
    }


def determinism_record(deterministic: bool, switches: dict, replaced: list[str]) -> dict:
    """env.json's ``determinism``: asked for, the framework's switches as it reports them,
    and the operations the model replaced by deterministic equivalents."""
    return {"requested": bool(deterministic), "switches": switches, "replaced": replaced}


def determinism_fact(deterministic: bool) -> str:
    """framework.deterministic in the same words for every framework (the switches each
    sets are in env.json: determinism)."""
    if deterministic:
        return "enforced: deterministic kernels only; an operation without one stops the run"
    return "off: the framework's fastest kernels (autotuned, possibly non-deterministic)"


def protocol_facts(
    *,
    momentum: float,
    nesterov: bool,
    momentum_buffer: str,
    weight_decay: float,
    reduced_dtype: str | None,
    loss_scaling: bool,
    mean,
    std,
    layers: list[LayerInfo],
    model,
    drop_rate: float | None,
    drop_path_rate: float | None,
    shared_init: bool,
    data_stream: str,
    micro_batch: int,
    accum_steps: int,
    float32_matmul: str,
    deterministic: bool,
) -> ProtocolFacts:
    """A trainer's ProtocolFacts from its own objects, worded by the helpers above; `model`
    is its registry entry (the dropout and drop path in effect for the rates its model was
    built with, and its zoo's initializers unless the weights are the shared ones);
    `data_stream` the backend's own words for its stream unless it is the shared one."""
    return ProtocolFacts(
        optimizer=optimizer_fact(momentum, nesterov),
        momentum_buffer=momentum_buffer,
        weight_decay=weight_decay_fact(weight_decay),
        loss=LOSS_FACT,
        lr_stepping=LR_STEPPING_FACT,
        precision=precision_fact(reduced_dtype, loss_scaling),
        input_normalization=normalization_fact(mean, std),
        batchnorm=batchnorm_fact(layers),
        dropout=dropout_fact(model.dropout(drop_rate)),
        drop_path=drop_path_fact(model.drop_path(drop_path_rate)),
        initializers=SHARED_INIT_FACT if shared_init else model.initializers,
        accumulation=f"micro-batch {micro_batch} x {accum_steps} steps",
        data_stream=data_stream,
        float32_matmul=float32_matmul,
        determinism=determinism_fact(deterministic),
    )
