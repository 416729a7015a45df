"""Layer shapes: feature-map shapes at every stage/block boundary of both models."""

from __future__ import annotations

import re

from benchmark.parity.frameworks import keras, torch  # torch first, then TensorFlow

from benchmark.models import stem_for
from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _keras_denses, _shape_chw, _shape_str


def _boundaries(a: Arms):
    """[(label, torch module, 'out'|'in', keras shape)] at stage/block boundaries, in forward order."""
    tm, km = a.tm, a.km
    top = {layer.name: layer for layer in km.layers}
    dense = _keras_denses(km)[-1]

    def last(pattern: str):
        found = [layer for layer in km.layers if re.fullmatch(pattern, layer.name)]
        return found[-1] if found else None

    rows = []
    if a.name == "resnet50":
        stem = top["pool1_pool"] if "pool1_pool" in top else top["conv1_relu"]
        rows.append(("stem", tm.maxpool, "out", stem.output.shape))
        for k in range(1, 5):
            rows.append((f"stage {k}", getattr(tm, f"layer{k}"), "out", last(rf"conv{k + 1}_block\d+_out").output.shape))
        head = tm.fc
    elif a.name == "mobilenetv2":
        rows.append(("stem", tm.features[0], "out", top["Conv1_relu"].output.shape))
        for i in range(1, len(tm.features) - 1):
            prefix = "expanded_conv_" if i == 1 else f"block_{i - 1}_"
            layer = [layer for layer in km.layers if layer.name.startswith(prefix)][-1]
            rows.append((f"block {i}", tm.features[i], "out", layer.output.shape))
        rows.append(("last 1x1 conv", tm.features[-1], "out", top["out_relu"].output.shape))
        head = tm.classifier[-1]
    elif a.name == "convnext_tiny":
        p = km.name
        gap = next(layer for layer in km.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
        rows.append(("stem", tm.features[0], "out", top[f"{p}_stem"].output.shape))
        for s in range(4):
            # the block's sum has no Keras layer: its shape is the input of what follows
            following = top.get(f"{p}_downsampling_block_{s}", gap)
            rows.append((f"stage {s + 1}", tm.features[1 + 2 * s], "out", following.input.shape))
            if s < 3:
                rows.append((f"downsample {s + 1}", tm.features[2 + 2 * s], "out",
                             top[f"{p}_downsampling_block_{s}"].output.shape))
        head = tm.classifier[-1]
    else:  # pragma: no cover - MODELS is closed
        raise ValueError(a.name)
    rows.append(("pooled (classifier input)", head, "in", dense.input.shape))
    rows.append(("logits", head, "out", dense.output.shape))
    return rows


def check_shapes(a: Arms) -> list[Finding]:
    boundaries = _boundaries(a)
    seen: dict[int, tuple] = {}
    hooks = []
    for i, (_, module, where, _) in enumerate(boundaries):
        def hook(mod, inputs, output=None, i=i, where=where):
            seen[i] = tuple((inputs[0] if where == "in" else output).shape)
        hooks.append(module.register_forward_pre_hook(hook) if where == "in" else module.register_forward_hook(hook))
    try:
        a.tm.eval()
        with torch.no_grad():
            a.tm(torch.zeros(1, 3, a.size, a.size, device=next(a.tm.parameters()).device))
    finally:
        for h in hooks:
            h.remove()

    rows, first_mismatch, last_map = [], None, None
    for i, (label, _, _, kshape) in enumerate(boundaries):
        t = _shape_chw(seen[i], "nchw")
        k = _shape_chw(kshape, "nhwc")
        same = t == k
        if not same and first_mismatch is None:
            first_mismatch = label
        if len(t) == 3:
            last_map = (label, t, k)
        rows.append(Finding("Layer shapes", label, _shape_str(t), _shape_str(k), same,
                            "same shape" if same else "shapes differ: the two arms are not the same network here"))
    expected = stem_for(a.name, a.size).final_map
    label, t, k = last_map
    ok = t == k and t[1:] == (expected, expected)
    rows.insert(0, Finding(
        "Layer shapes", "final feature map before global pooling", f"{_shape_str(t)} after {label}",
        f"{_shape_str(k)} after {label}", ok,
        f"both {expected}x{expected} as the stems of docs/protocol.md §4 intend" if ok
        else f"docs/protocol.md §4 expects {expected}x{expected} before pooling",
    ))
    n = len(boundaries)
    rows.insert(0, Finding(
        "Layer shapes", "shape sequence over all boundaries", f"{n} boundaries", f"{n} boundaries",
        first_mismatch is None,
        "every stage/block boundary has the same shape" if first_mismatch is None
        else f"first mismatch at {first_mismatch}",
    ))
    return rows
