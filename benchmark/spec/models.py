"""What each model is, framework-neutral: one ``ModelSpec`` per model in ``SPECS``.

Everything about a model that does not depend on the framework is defined here once:
its stems per input size (docs/protocol.md §4), the labels of the block boundaries the
parity audit compares, torchvision's initialization rules (the aligned protocol's shared
initial weights), torchvision's regularization and the parameter-parity tolerance.
Each backend registers its builder for the same name (``register_model`` in
``benchmark.backends.<name>.models``); a registration for a name without a spec fails
at import, and tests/test_models.py checks that every backend registers every spec and
that conf/model/ names the same models. docs/architecture.md: "Add a model".
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from benchmark import BenchmarkError

# Initializers a model registry can apply to every conv and dense kernel instead of the
# zoo's own (`create_model(..., init=...)`), biases set to zero, normalization layers
# left at ones/zeros; each backend computes fans in its own framework's convention.
INITIALIZERS = {
    "kaiming_normal_fan_out": "kaiming normal, fan_out (torchvision's ResNet and MobileNetV2 convolutions)",
    "glorot_uniform": "glorot uniform (the Keras layer default)",
    "trunc_normal_0.02": "truncated normal, std 0.02 (torchvision's ConvNeXt)",
}


@dataclass(frozen=True)
class Stem:
    """The first convolution after editing, and whether ResNet's max-pool stays.

    ``kernel`` None keeps the zoo's own first convolution (only ``stride`` may change).
    ``padding`` is symmetric zero padding in pixels.
    """

    kernel: int | None
    stride: int
    padding: int
    keep_maxpool: bool = True
    final_map: int = 0  # spatial size of the feature map before global pooling


@dataclass(frozen=True)
class InitRule:
    conv: str  # every conv kernel
    linear: str  # every dense kernel
    linear_bias: str  # dense biases (conv biases, where a model has them, start at zero)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model, as every backend must build it. Tensor names of the canonical layout are
    those of torchvision's state_dict of the same network (docs/protocol.md §11)."""

    name: str
    stems: dict[int, Stem]  # input size -> the stem after the §4 edit
    # the block boundaries whose output shapes the parity audit compares, in forward order;
    # each backend lists one module (or tensor) per label
    blocks: tuple[str, ...]
    init: InitRule  # torchvision's initialization: the aligned protocol's shared initial weights
    # torchvision's regularization, which the aligned protocol applies in every backend;
    # None: the network has no such layer, and asking for a rate is an error
    dropout: float | None = None  # before the classifier
    drop_path: float | None = None  # stochastic depth at the last block, linear in depth from 0
    # trainable-parameter difference allowed between the backends' builds (§4), in percent
    param_tolerance_pct: float = 1.0


_RESNET_STEMS = {  # the 64x64 stem keeps the 7x7/2 conv, and no max-pool: a 4x4 map before pooling
    32: Stem(kernel=3, stride=1, padding=1, keep_maxpool=False, final_map=4),
    64: Stem(kernel=None, stride=2, padding=3, keep_maxpool=False, final_map=4),
}
_RESNET_BLOCKS = ("stem", "stage 1", "stage 2", "stage 3", "stage 4")
_RESNET_INIT = InitRule("kaiming_normal_fan_out", "uniform_fan_in", "uniform_fan_in")

SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(name="resnet50", stems=_RESNET_STEMS, blocks=_RESNET_BLOCKS, init=_RESNET_INIT),
        ModelSpec(
            name="mobilenetv2",
            stems={
                32: Stem(kernel=None, stride=1, padding=1, final_map=2),
                64: Stem(kernel=None, stride=2, padding=1, final_map=2),
            },
            blocks=("stem", *(f"block {i}" for i in range(1, 18)), "last 1x1 conv"),
            init=InitRule("kaiming_normal_fan_out", "normal_0.01", "zeros"),
            dropout=0.2,
        ),
        ModelSpec(
            name="convnext_tiny",
            stems={
                32: Stem(kernel=3, stride=1, padding=1, final_map=4),
                64: Stem(kernel=2, stride=2, padding=0, final_map=4),
            },
            blocks=("stem", "stage 1", "downsample 1", "stage 2", "downsample 2", "stage 3", "downsample 3", "stage 4"),
            init=InitRule("trunc_normal_0.02", "trunc_normal_0.02", "zeros"),
            drop_path=0.1,
            param_tolerance_pct=5.0,
        ),
        # a small model, and the worked example of docs/architecture.md "Add a model"
        ModelSpec(name="resnet18", stems=_RESNET_STEMS, blocks=_RESNET_BLOCKS, init=_RESNET_INIT),
    )
}


def list_models() -> list[str]:
    """Every model a run can name (model=...), in the order the tools list them."""
    return list(SPECS)


def spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise BenchmarkError(f"model={name} is unknown; valid: {', '.join(SPECS)}") from None


# Views of SPECS under the names the rest of the package reads
MODELS = tuple(SPECS)
STEMS: dict[tuple[str, int], Stem] = {(s.name, size): stem for s in SPECS.values() for size, stem in s.stems.items()}
TORCHVISION_INIT = {name: s.init for name, s in SPECS.items()}
LAYER_SCALE_INIT = 1e-6  # ConvNeXt's layer scale, in both zoos


def stem_for(model: str, image_size: int) -> Stem:
    try:
        return STEMS[(model, image_size)]
    except KeyError:
        sizes = sorted({s for m, s in STEMS if m == model})
        raise BenchmarkError(
            f"no stem defined for model={model} at {image_size}x{image_size}; "
            f"models: {', '.join(MODELS)}; input sizes: {sizes or [32, 64]}"
        ) from None


def final_map(block_shapes: list[tuple[str, tuple[int, ...]]]) -> tuple[int, int]:
    """(H, W) of the last feature map before global pooling, from a registry's block shapes."""
    return next(shape for _, shape in reversed(block_shapes) if len(shape) == 3)[1:]


# ------------------------------------------------------------------ backend registries


@dataclass(frozen=True, kw_only=True)
class Registration:
    """What every backend records of a model it registers; each backend's entry adds its builders."""

    spec: ModelSpec
    initializers: str  # the zoo's own initialization, in the words of its framework
    # the zoo's default rates where they are not torchvision's (Keras' zoo has neither
    # MobileNetV2's head dropout nor ConvNeXt's stochastic depth); None: torchvision's
    zoo_dropout: float | None = None
    zoo_drop_path: float | None = None

    def dropout(self, rate: float | None) -> float:
        """The dropout in effect for a create_model drop_rate argument (None: the zoo's own)."""
        return _in_effect(self.spec.dropout, self.zoo_dropout, rate)

    def drop_path(self, rate: float | None) -> float:
        return _in_effect(self.spec.drop_path, self.zoo_drop_path, rate)

    def check_rates(self, drop_rate: float | None, drop_path_rate: float | None) -> None:
        for rate, has, what in (
            (drop_rate, self.spec.dropout, "dropout"),
            (drop_path_rate, self.spec.drop_path, "stochastic depth"),
        ):
            if rate and has is None:
                raise BenchmarkError(f"{self.spec.name} has no {what} to set")


def _in_effect(torchvision: float | None, zoo: float | None, rate: float | None) -> float:
    if torchvision is None:
        return 0.0
    if rate is not None:
        return rate
    return torchvision if zoo is None else zoo


class Registry:
    """One backend's models, each registered once, by the name of its ModelSpec."""

    def __init__(self, backend: str, module: str):
        self.backend, self.module = backend, module
        self._entries: dict[str, Registration] = {}

    def register(self, entry_type: type, name: str, builder_field: str, **fields) -> Callable:
        """A decorator registering its function as `entry_type`'s `builder_field`; a name
        without a ModelSpec (or registered twice) fails here, that is at import."""
        if name not in SPECS:
            raise BenchmarkError(
                f"{self.module} registers model={name}, which has no ModelSpec in "
                f"benchmark.spec.models.SPECS (valid: {', '.join(SPECS)}); define it there first"
            )
        if name in self._entries:
            raise BenchmarkError(f"{self.module} registers model={name} twice")

        def decorate(build: Callable) -> Callable:
            self._entries[name] = entry_type(spec=SPECS[name], **{builder_field: build}, **fields)
            return build

        return decorate

    def names(self) -> list[str]:
        return [name for name in SPECS if name in self._entries]

    def __getitem__(self, name: str):
        try:
            return self._entries[name]
        except KeyError:
            if name in SPECS:
                raise BenchmarkError(
                    f"model={name} has no {self.backend} registration; add one with @register_model in {self.module}"
                ) from None
            raise BenchmarkError(f"model={name} is unknown; valid: {', '.join(self.names())}") from None


T = TypeVar("T")  # a backend's block boundary: a torch module, a Keras output tensor


def labelled(entry: Registration, boundaries: list[T]) -> list[tuple[str, T]]:
    """(label, boundary) pairs: a backend's block boundaries under the spec's labels."""
    if len(boundaries) != len(entry.spec.blocks):
        raise ValueError(
            f"{entry.spec.name}: {len(boundaries)} block boundaries for "
            f"{len(entry.spec.blocks)} labels {entry.spec.blocks}"
        )
    return list(zip(entry.spec.blocks, boundaries, strict=True))


ARCHITECTURES = ("native", "aligned")


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise BenchmarkError(f"architecture={architecture} is unknown; valid: {', '.join(ARCHITECTURES)}")


def check_init(init: str | None) -> None:
    if init is not None and init not in INITIALIZERS:
        raise BenchmarkError(f"init={init} is unknown; valid: {', '.join(INITIALIZERS)} (or None: the zoo's own)")


# ------------------------------------------------------------------ shared initial weights
# The aligned protocol's initial weights (protocol.init=aligned, docs/protocol.md §11):
# torchvision's initialization rules, drawn with NumPy from the seed by this
# framework-neutral code and copied into every backend through its layer mapping, so
# every initial parameter and normalization statistic is the same number in each arm.
# Tensors are named and shaped as in torchvision's state_dict (the canonical layout).


def _draw(rule: str, shape: tuple[int, ...], fan_in: int, rng) -> np.ndarray:
    if rule == "zeros":
        return np.zeros(shape)
    if rule == "kaiming_normal_fan_out":  # torch's fan_out of a conv kernel: out * kh * kw
        return rng.normal(0.0, math.sqrt(2.0 / (shape[0] * int(np.prod(shape[2:])))), shape)
    if rule == "uniform_fan_in":  # nn.Linear's default (kaiming uniform, a=sqrt(5)): bound 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)
    if rule == "normal_0.01":
        return rng.normal(0.0, 0.01, shape)
    if rule == "trunc_normal_0.02":  # nn.init.trunc_normal_(std=0.02): cut at +-2 (absolute)
        return np.clip(rng.normal(0.0, 0.02, shape), -2.0, 2.0)
    raise ValueError(f"unknown init rule {rule}")


def shared_initial_weights(model: str, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """float32 initial values of every tensor in `shapes` (torchvision state_dict names
    and layout) by torchvision's rules for `model`. Each tensor has its own stream of
    (seed, name), so the values do not depend on the order the backend lists them in."""
    rule = TORCHVISION_INIT[model]
    out = {}
    for key, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        parent, _, leaf = key.rpartition(".")
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
        weight_shape = shapes.get(f"{parent}.weight", ())
        if leaf == "running_mean" or (leaf == "bias" and len(weight_shape) != 2):
            value = np.zeros(shape)  # BatchNorm mean, normalization shift, conv bias
        elif leaf == "running_var" or (leaf == "weight" and len(shape) == 1):
            value = np.ones(shape)  # BatchNorm variance, normalization scale
        elif leaf == "layer_scale":
            value = np.full(shape, LAYER_SCALE_INIT)
        elif leaf == "weight" and len(shape) == 4:
            value = _draw(rule.conv, shape, int(np.prod(shape[1:])), rng)
        elif leaf == "weight" and len(shape) == 2:
            value = _draw(rule.linear, shape, shape[1], rng)
        elif leaf == "bias":
            value = _draw(rule.linear_bias, shape, int(weight_shape[1]), rng)
        else:
            raise ValueError(f"{model}: no initialization rule for {key} {shape}")
        out[key] = value.astype(np.float32)
    return out


def create_for_protocol(registry, name: str, num_classes: int, image_size: int, knobs, seed: int):
    """A backend's model under a run's protocol knobs (benchmark.spec.protocol.Knobs): built by
    its registry module (``create_model``, ``canonical_shapes``, ``load_canonical``) with
    the knobs' architecture and regularization, and holding the shared initial weights
    when ``knobs.init`` (docs/protocol.md §11). One definition for every backend."""
    model = registry.create_model(name, num_classes, image_size, **knobs.model_options(name))
    if knobs.init:
        registry.load_canonical(model, name, shared_initial_weights(name, registry.canonical_shapes(model, name), seed))
    return model
