"""torchvision zoo models with the stems of docs/protocol.md §4 (from benchmark.models.STEMS)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from benchmark.models import MODELS, stem_for


def build_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    stem = stem_for(name, image_size)
    if name == "resnet50":
        model = tvm.resnet50(weights=None, num_classes=num_classes)
        if stem.kernel is not None:
            model.conv1 = nn.Conv2d(3, 64, stem.kernel, stem.stride, stem.padding, bias=False)
            # the same init torchvision gives every ResNet conv
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        if not stem.keep_maxpool:
            model.maxpool = nn.Identity()
    elif name == "mobilenetv2":
        model = tvm.mobilenet_v2(weights=None, num_classes=num_classes)
        model.features[0][0].stride = (stem.stride, stem.stride)
    elif name == "convnext_tiny":
        model = tvm.convnext_tiny(weights=None, num_classes=num_classes)
        old = model.features[0][0]
        conv = nn.Conv2d(3, old.out_channels, stem.kernel, stem.stride, stem.padding, bias=True)
        # the same init torchvision gives every ConvNeXt conv
        nn.init.trunc_normal_(conv.weight, std=0.02)
        nn.init.zeros_(conv.bias)
        model.features[0][0] = conv
    else:
        raise ValueError(f"model {name!r} unknown; valid: {MODELS}")
    return model


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, frozen parameters and buffers (BatchNorm running stats)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.dtype.is_floating_point)
    return {"trainable": trainable, "non_trainable": frozen, "buffers": buffers}


def feature_map_size(model: nn.Module, name: str, image_size: int) -> tuple[int, int]:
    """Spatial size of the last feature map before global pooling, for one input."""
    x = torch.zeros(1, 3, image_size, image_size)
    model.eval()
    with torch.no_grad():
        if name == "resnet50":
            body = nn.Sequential(*list(model.children())[:-2])
        else:
            body = model.features
        return tuple(body(x).shape[-2:])
