"""The PyTorch model registry: torchvision zoo models with the stems of docs/protocol.md §4.

In the manner of timm's ``@register_model`` and ``create_model(name, drop_rate=...,
drop_path_rate=...)``: each model is registered once, by the name of its neutral
``benchmark.spec.models.ModelSpec`` (stems, block labels, torchvision's regularization),
with what only PyTorch needs (the zoo builder, the modules at the block boundaries the
parity audit compares by label, the classifier); regularization is an argument (None
keeps the zoo's own value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision import models as tvm

from benchmark.backends.contract import LayerInfo
from benchmark.spec.models import (
    Registration,
    Registry,
    Stem,
    check_architecture,
    check_init,
    final_map,
    labelled,
    stem_for,
)


@dataclass(frozen=True, kw_only=True)
class Entry(Registration):
    # (zoo, num_classes, stem, dropout, drop_path) -> the model, rates already resolved
    build: Callable[..., nn.Module]
    zoo: Callable[..., nn.Module]  # torchvision's builder
    blocks: Callable[[nn.Module], list[nn.Module]]  # the module ending each of spec.blocks, in order
    head: Callable[[nn.Module], nn.Module]  # the classifier (its input is the pooled feature vector)


REGISTRY = Registry("pytorch", __name__)


def register_model(name: str, **fields) -> Callable:
    """Register the decorated builder for `name` (a benchmark.spec.models.SPECS key) with
    Entry's other fields; an unknown name fails at import."""
    return REGISTRY.register(Entry, name, "build", **fields)


class GlobalAvgPool(nn.Module):
    """Global average pooling as a mean over H and W, in place of torchvision's adaptive
    average pooling to 1x1: the same numbers (bit for bit on a CPU:
    tests/test_gpu_readiness.py). Adaptive pooling's CUDA backward has no deterministic
    kernel (pytorch issues 108341 and 149130); torch today dispatches pooling to 1x1 to a
    mean before that kernel is reached, and this class makes the mean a property of the
    model rather than of a dispatch detail. Every PyTorch model uses it, deterministic or
    not, so the network does not change with the flag."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


# What GlobalAvgPool replaces, in env.json's words (determinism.replaced)
REPLACED = ["adaptive average pooling to 1x1 -> GlobalAvgPool (mean over H, W): no deterministic CUDA backward"]


class MobileNetV2(tvm.MobileNetV2):
    """torchvision's MobileNetV2 with its functional adaptive pooling as GlobalAvgPool."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.avgpool = GlobalAvgPool()

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(*, weights=None, **kwargs) -> MobileNetV2:
    """tvm.mobilenet_v2's builder (untrained weights only) for the class above."""
    if weights is not None:
        raise ValueError("mobilenetv2: the benchmark trains from scratch (weights=None)")
    return MobileNetV2(**kwargs)


RESNET_INIT = "conv: kaiming normal fan_out; BatchNorm: ones/zeros; fc: uniform +-1/sqrt(fan_in) (nn default)"


def _resnet_blocks(m: tvm.ResNet) -> list[nn.Module]:
    return [m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4]


@register_model("resnet18", zoo=tvm.resnet18, blocks=_resnet_blocks, head=lambda m: m.fc, initializers=RESNET_INIT)
@register_model("resnet50", zoo=tvm.resnet50, blocks=_resnet_blocks, head=lambda m: m.fc, initializers=RESNET_INIT)
def _resnet(zoo, num_classes: int, stem: Stem, dropout: float, drop_path: float) -> nn.Module:
    model = zoo(weights=None, num_classes=num_classes)
    if stem.kernel is not None:
        model.conv1 = nn.Conv2d(3, 64, stem.kernel, stem.stride, stem.padding, bias=False)
        # the same init torchvision gives every ResNet conv
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if not stem.keep_maxpool:
        model.maxpool = nn.Identity()
    model.avgpool = GlobalAvgPool()
    return model


@register_model(
    "mobilenetv2",
    zoo=mobilenet_v2,
    # stem, blocks 1-17, the last 1x1 conv
    blocks=lambda m: list(m.features),
    head=lambda m: m.classifier[-1],
    initializers="conv: kaiming normal fan_out; BatchNorm: ones/zeros; classifier: normal(0, 0.01)",
)
def _mobilenetv2(zoo, num_classes: int, stem: Stem, dropout: float, drop_path: float) -> nn.Module:
    model = zoo(weights=None, num_classes=num_classes, dropout=dropout)
    model.features[0][0].stride = (stem.stride, stem.stride)
    return model


@register_model(
    "convnext_tiny",
    zoo=tvm.convnext_tiny,
    # stem, then stage 1, downsample 1, ..., stage 4
    blocks=lambda m: list(m.features),
    head=lambda m: m.classifier[-1],
    initializers="conv and linear: truncated normal std 0.02, zero bias; LayerNorm: ones/zeros; layer scale 1e-6",
)
def _convnext_tiny(zoo, num_classes: int, stem: Stem, dropout: float, drop_path: float) -> nn.Module:
    model = zoo(weights=None, num_classes=num_classes, stochastic_depth_prob=drop_path)
    old = model.features[0][0]
    if stem.kernel is None:  # benchmark.spec.models gives ConvNeXt's stem a kernel at every size
        raise ValueError("convnext_tiny: the stem needs a kernel size")
    conv = nn.Conv2d(3, old.out_channels, stem.kernel, stem.stride, stem.padding, bias=True)
    # the same init torchvision gives every ConvNeXt conv
    nn.init.trunc_normal_(conv.weight, std=0.02)
    assert conv.bias is not None  # noqa: S101  narrows Conv2d.bias's Optional: made with bias=True
    nn.init.zeros_(conv.bias)
    model.features[0][0] = conv
    model.avgpool = GlobalAvgPool()
    return model


def entry(name: str) -> Entry:
    return REGISTRY[name]


# benchmark.spec.models.INITIALIZERS in torch.nn.init (fans as torch computes them)
INIT = {
    "kaiming_normal_fan_out": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "glorot_uniform": nn.init.xavier_uniform_,
    "trunc_normal_0.02": lambda w: nn.init.trunc_normal_(w, std=0.02),
}


def create_model(
    name: str,
    num_classes: int,
    image_size: int,
    *,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    init: str | None = None,
    architecture: str = "native",
    dtype: str | None = None,
) -> nn.Module:
    """The zoo model `name` with the protocol's stem; regularization and initialization
    None = the zoo's own, else `init` (benchmark.spec.models.INITIALIZERS) on every conv and
    dense kernel, biases zero. `architecture`: torchvision's networks are the reference
    the aligned architecture is defined by (docs/protocol.md §11), so both values build
    the same network here. `dtype`: of every parameter (None: float32; "float64" for the
    numerical-equivalence check)."""
    check_init(init)
    check_architecture(architecture)
    e = entry(name)
    e.check_rates(drop_rate, drop_path_rate)
    model = e.build(e.zoo, num_classes, stem_for(name, image_size), e.dropout(drop_rate), e.drop_path(drop_path_rate))
    if init is not None:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                INIT[init](module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return model if dtype is None else model.to(getattr(torch, dtype))


# ------------------------------------------------------------------ canonical layout
# The aligned protocol names every tensor as torchvision's state_dict does (the
# canonical layout the shared initial weights and the equivalence check use), so the
# mapping is the identity here; the Keras registry maps its variables onto these names.
# (`name`, the model's registry name, is what the Keras mapping needs; unused here.)


def canonical_state(model: nn.Module, name: str = "", dtype=np.float32) -> dict[str, np.ndarray]:
    """Every parameter and normalization statistic, by state_dict name, as `dtype` arrays."""
    return {
        k: v.detach().cpu().double().numpy().astype(dtype)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def canonical_shapes(model: nn.Module, name: str = "") -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def load_canonical(model: nn.Module, name: str, state: dict[str, np.ndarray]) -> None:
    """Copy `state` (canonical names and layout) into the model; every tensor must be given."""
    own = model.state_dict()
    missing = set(canonical_shapes(model, name)) - set(state)
    if missing:
        raise ValueError(f"no value for {sorted(missing)[:3]} ({len(missing)} tensors)")
    with torch.no_grad():
        for key, value in state.items():
            target = own[key]
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(f"{key}: shape {tuple(value.shape)} given, the model has {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.asarray(value)).to(target.dtype))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, frozen parameters and buffers (BatchNorm running stats)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.dtype.is_floating_point)
    return {"trainable": trainable, "non_trainable": frozen, "buffers": buffers}


def layer_table(model: nn.Module) -> list[LayerInfo]:
    """Weight and normalization layers in module order (see contract.LayerInfo)."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            kind = "depthwise conv" if m.groups > 1 and m.groups == m.in_channels else "conv"
            pad = None if isinstance(m.padding, str) else (m.padding[0], m.padding[0], m.padding[1], m.padding[1])
            rows.append(
                LayerInfo(
                    name,
                    kind,
                    tuple(m.weight.shape),
                    m.stride[0],
                    pad,
                    m.bias.numel() if m.bias is not None else 0,
                    kernel=_numpy(m.weight),
                    fans=nn.init._calculate_fan_in_and_fan_out(m.weight),
                )
            )
        elif isinstance(m, nn.Linear):
            rows.append(
                LayerInfo(
                    name,
                    "dense",
                    tuple(m.weight.shape),
                    bias=m.bias.numel() if m.bias is not None else 0,
                    kernel=_numpy(m.weight),
                    fans=nn.init._calculate_fan_in_and_fan_out(m.weight),
                )
            )
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            rows.append(LayerInfo(name, "batchnorm", (m.num_features,), momentum=m.momentum, eps=m.eps))
        elif isinstance(m, nn.LayerNorm):
            rows.append(LayerInfo(name, "layernorm", tuple(m.normalized_shape), eps=m.eps))
    return rows


def _numpy(weight: torch.Tensor):
    return weight.detach().float().cpu().numpy()


def block_shapes(model: nn.Module, name: str, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(label, (C, H, W)) after every block of the registry, then the pooled features
    and the logits, from one forward pass in eval mode."""
    e = entry(name)
    seen: dict[str, tuple[int, ...]] = {}

    def record(label: str, tensor: torch.Tensor) -> None:  # a hook returning a value would replace the output
        seen.setdefault(label, tuple(tensor.shape[1:]))

    blocks = labelled(e, e.blocks(model))
    hooks = [
        module.register_forward_hook(lambda mod, i, out, label=label: record(label, out)) for label, module in blocks
    ]
    head = e.head(model)
    hooks.append(head.register_forward_pre_hook(lambda mod, i: record("pooled", i[0])))
    hooks.append(head.register_forward_hook(lambda mod, i, out: record("logits", out)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return [(label, seen[label]) for label, _ in blocks] + [("pooled", seen["pooled"]), ("logits", seen["logits"])]


def feature_map_size(model: nn.Module, name: str, image_size: int) -> tuple[int, int]:
    """Spatial size of the last feature map before global pooling, for one input."""
    return final_map(block_shapes(model, name, image_size))
