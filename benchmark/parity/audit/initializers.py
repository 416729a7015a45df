"""Initializers: the initialization of each layer family, measured and read from the source."""

from __future__ import annotations

import inspect
import math
import re
from collections import Counter

import numpy as np

from benchmark.parity.frameworks import keras  # torch first, then TensorFlow
from torch import nn

from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import (
    _fmt, _keras_bns, _keras_conv_kind, _keras_convs, _keras_denses, _keras_kernel, _keras_lns, _torch_bns,
    _torch_conv_kind, _torch_convs, _torch_linears, _torch_lns,
)


# (id, label, allowed distribution shapes, std as a function of (fan_in, fan_out))
CANDIDATES = (
    ("kaiming_normal_fan_out", "kaiming normal, fan_out (std sqrt(2/fan_out))", ("normal",), lambda fi, fo: math.sqrt(2 / fo)),
    ("kaiming_normal_fan_in", "kaiming normal, fan_in (std sqrt(2/fan_in))", ("normal",), lambda fi, fo: math.sqrt(2 / fi)),
    ("normal_0.01", "normal(0, 0.01)", ("normal",), lambda fi, fo: 0.01),
    ("trunc_normal_0.02", "truncated normal, std 0.02", ("normal", "truncated normal"), lambda fi, fo: 0.02),
    ("torch_default_uniform", "uniform +-1/sqrt(fan_in) (kaiming_uniform a=sqrt(5), torch's nn default)", ("uniform",),
     lambda fi, fo: math.sqrt(1 / (3 * fi))),
    ("glorot_uniform", "glorot uniform +-sqrt(6/(fan_in+fan_out))", ("uniform",), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("he_uniform", "he uniform +-sqrt(6/fan_in)", ("uniform",), lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_uniform", "lecun uniform +-sqrt(3/fan_in)", ("uniform",), lambda fi, fo: math.sqrt(1 / fi)),
    ("glorot_normal", "glorot normal (truncated)", ("truncated normal",), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("he_normal", "he normal (truncated), fan_in", ("truncated normal",), lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_normal", "lecun normal (truncated)", ("truncated normal",), lambda fi, fo: math.sqrt(1 / fi)),
)


def _keras_fans(shape) -> tuple[int, int]:
    """keras.initializers' fans: receptive field x input / output channels of the kernel layout."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _distribution(weights: list[np.ndarray], per_layer: int = 20_000) -> tuple[str, float]:
    """Shape of the pooled, per-layer standardized weights (a fixed sample of each large layer)."""
    rng = np.random.default_rng(0)
    parts = []
    for w in weights:
        flat = w.ravel()
        if flat.size > per_layer:
            flat = flat[rng.integers(0, flat.size, per_layer)]
        flat = flat.astype(np.float64)
        if flat.std() > 0:
            parts.append((flat - flat.mean()) / flat.std())
    z = np.concatenate(parts)
    kurt = float((z ** 4).mean() - 3.0)
    if kurt < -0.95:
        return "uniform", kurt
    if kurt < -0.3:
        return "truncated normal", kurt
    return "normal", kurt


def _match_init(layers: list[tuple[np.ndarray, int, int]]) -> dict:
    """Best candidate scheme for (weights, fan_in, fan_out) of a family of layers."""
    stds = [float(w.std()) for w, _, _ in layers]
    if max(stds) == 0.0:
        values = sorted({float(w.ravel()[0]) for w, _, _ in layers})
        return {"id": f"constant_{values}", "label": f"constant {values}", "text": f"constant {values}"}
    shape, kurt = _distribution([w for w, _, _ in layers])
    best = None
    for cid, label, shapes, std_fn in CANDIDATES:
        if shape not in shapes:
            continue
        ratios = np.array([s / std_fn(fi, fo) for s, (_, fi, fo) in zip(stds, layers)])
        score = float(np.median(np.abs(np.log(ratios))))
        if best is None or score < best[0]:
            best = (score, cid, label, ratios)
    if best is None or best[0] > math.log(1.15):
        lo, hi = min(stds), max(stds)
        return {"id": f"unrecognized_{shape}", "label": f"unrecognized {shape}",
                "text": f"unrecognized {shape} (std {_fmt(lo)}-{_fmt(hi)}, excess kurtosis {kurt:+.2f})"}
    _, cid, label, ratios = best
    text = (f"{label}; measured std/expected median {np.median(ratios):.2f} (range {ratios.min():.2f}-{ratios.max():.2f}) "
            f"over {len(layers)} layers, {shape} (excess kurtosis {kurt:+.2f})")
    return {"id": cid, "label": label, "text": text}


def _keras_init_config(layer, key: str) -> str:
    cfg = layer.get_config().get(key)
    if cfg is None:
        return "none"
    if isinstance(cfg, str):
        return cfg
    name = cfg.get("class_name", "?")
    args = {k: v for k, v in (cfg.get("config") or {}).items() if k != "seed" and v is not None}
    return name + (f"({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")


def _families(convs: list, conv_kind, denses: list) -> dict[str, list]:
    """Layers grouped as the report names them: conv kinds, block denses, the head."""
    fams: dict[str, list] = {}
    for layer in convs:
        fams.setdefault(conv_kind(layer), []).append(layer)
    for layer in denses[:-1]:
        fams.setdefault("dense (inside blocks)", []).append(layer)
    if denses:
        fams.setdefault("dense (classifier head)", []).append(denses[-1])
    return fams


def _torch_families(model) -> dict[str, list]:
    return _families([m for _, m in _torch_convs(model)], _torch_conv_kind, [m for _, m in _torch_linears(model)])


def _keras_families(model) -> dict[str, list]:
    return _families(list(_keras_convs(model)), _keras_conv_kind, list(_keras_denses(model)))


def _torch_bias_desc(mods) -> tuple[str, str]:
    biases = [(m.bias.detach().cpu().numpy(), m) for m in mods if m.bias is not None]
    if not biases:
        return "none", "no bias"
    if len(biases) < len(mods):
        prefix = f"{len(biases)} of {len(mods)} layers: "
    else:
        prefix = ""
    if all(not b.any() for b, _ in biases):
        return "zeros", prefix + "zeros"
    ratios = []
    for b, m in biases:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
        ratios.append(float(b.std()) / math.sqrt(1 / (3 * fan_in)))
    if abs(math.log(float(np.median(ratios)))) < math.log(1.3):
        return "torch_default_uniform", prefix + "uniform +-1/sqrt(fan_in) (torch's nn default; measured)"
    return "other", prefix + f"nonzero (std {np.median([float(b.std()) for b, _ in biases]):.3g})"


def _keras_bias_desc(layers) -> tuple[str, str]:
    used = [layer for layer in layers if layer.use_bias]
    if not used:
        return "none", "no bias"
    prefix = f"{len(used)} of {len(layers)} layers: " if len(used) < len(layers) else ""
    names = Counter(_keras_init_config(layer, "bias_initializer") for layer in used)
    if all(not np.asarray(layer.bias).any() for layer in used) and set(names) == {"Zeros"}:
        return "zeros", prefix + "Zeros"
    return "other", prefix + ", ".join(names)


# how each measured scheme appears in torchvision's source (None: no nn.init call, the module default)
SOURCE_PATTERNS = {
    "kaiming_normal_fan_out": r"kaiming_normal_\([^\n]*fan_out",
    "kaiming_normal_fan_in": r"kaiming_normal_\((?![^\n]*fan_out)",
    "normal_0.01": r"\bnormal_\([^\n]*0\.01",
    "trunc_normal_0.02": r"trunc_normal_\([^\n]*0\.02",
    "torch_default_uniform": None,
}


def _torch_init_calls(model) -> tuple[list[str], str]:
    try:
        src = inspect.getsource(type(model).__init__)
    except (OSError, TypeError):
        return [], ""
    return re.findall(r"nn\.init\.\w+\([^\n]*?\)(?=\s*$)", src, flags=re.M), src


def _torch_init_source(model) -> str:
    calls, src = _torch_init_calls(model)
    if not src:
        return "source not available"
    conditional = "zero_init_residual" in src
    text = "; ".join(dict.fromkeys(calls)) or "no nn.init calls"
    return f"{type(model).__name__}.__init__: {text}" + (" (the bn2/bn3 zero-init lines only with "
                                                         "zero_init_residual=True, off by default)" if conditional else "")


def check_initializers(a: Arms) -> list[Finding]:
    t_fams, k_fams = _torch_families(a.tm), _keras_families(a.km)
    rows = []
    measured = set()
    order = ("conv", "depthwise conv", "dense (inside blocks)", "dense (classifier head)")
    for fam in order:
        tmods, klayers = t_fams.get(fam, []), k_fams.get(fam, [])
        if not tmods and not klayers:
            continue
        t_match = k_match = None
        if tmods:
            t_match = _match_init([
                (m.weight.detach().cpu().numpy(), *nn.init._calculate_fan_in_and_fan_out(m.weight))
                for m in tmods
            ])
        if klayers:
            k_match = _match_init([
                (np.asarray(_keras_kernel(layer)), *_keras_fans(_keras_kernel(layer).shape))
                for layer in klayers
            ])
            key = "depthwise_initializer" if isinstance(klayers[0], keras.layers.DepthwiseConv2D) else "kernel_initializer"
            configured = Counter(_keras_init_config(layer, key) for layer in klayers)
            k_text = f"{', '.join(configured)} (get_config); {k_match['text']}"
        t_text = t_match["text"] if t_match else "none"
        if t_match:
            measured.add(t_match["id"])
        same = bool(t_match and k_match and t_match["id"] == k_match["id"])
        rows.append(Finding(
            "Initializers", f"{fam} weights ({len(tmods)} / {len(klayers)} layers)", t_text,
            k_text if klayers else "none", same,
            "same scheme" if same else
            "each framework keeps its default initialization (docs/protocol.md §4): different starting weight scales change "
            "the early training dynamics; may favour either side, reported, not removed",
        ))
        t_bias = _torch_bias_desc(tmods) if tmods else ("none", "none")
        k_bias = _keras_bias_desc(klayers) if klayers else ("none", "none")
        same = t_bias[0] == k_bias[0]
        if same:
            impact = "same"
        elif t_bias[0] == "none" or k_bias[0] == "none":
            impact = "one framework has biases here, the other not (see Architecture)"
        else:
            impact = "different initial biases: a small difference in the starting point"
        rows.append(Finding("Initializers", f"{fam} biases", t_bias[1], k_bias[1], same, impact))

    # normalization layers' scale/shift start values
    for label, tnorm, knorm in (("BatchNorm", [m for _, m in _torch_bns(a.tm)], _keras_bns(a.km)),
                                ("LayerNorm", [m for _, m in _torch_lns(a.tm)], _keras_lns(a.km))):
        if not tnorm and not knorm:
            continue
        t_ok = all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in tnorm if m.weight is not None)
        k_ok = all(bool((np.asarray(layer.gamma) == 1).all()) and bool((np.asarray(layer.beta) == 0).all())
                   for layer in knorm if layer.scale and layer.center)
        k_cfg = Counter(f"{_keras_init_config(layer, 'gamma_initializer')}/{_keras_init_config(layer, 'beta_initializer')}"
                        for layer in knorm)
        rows.append(Finding("Initializers", f"{label} gamma / beta",
                            "ones / zeros (measured)" if t_ok else "not ones/zeros",
                            f"{', '.join(k_cfg)} (ones / zeros measured)" if k_ok else f"{', '.join(k_cfg)}",
                            t_ok == k_ok, "same" if t_ok == k_ok else "different start of the normalization"))
    calls, _ = _torch_init_calls(a.tm)
    code = "\n".join(calls)
    unexplained = sorted({i for i in measured if i in SOURCE_PATTERNS and SOURCE_PATTERNS[i]
                          and not re.search(SOURCE_PATTERNS[i], code)} | {i for i in measured if i not in SOURCE_PATTERNS})
    k_classes = sorted({_keras_init_config(layer, key) for fam in k_fams.values() for layer in fam
                        for key in ("kernel_initializer", "depthwise_initializer") if key in layer.get_config()})
    rows.append(Finding("Initializers", "where the PyTorch init comes from", _torch_init_source(a.tm),
                        f"keras.applications passes no initializers: every layer keeps its class default "
                        f"({', '.join(k_classes)} kernels)", True,
                        "every measured PyTorch scheme matches an nn.init call in this code or the nn module default"
                        if not unexplained else f"measured but not found in the source: {', '.join(unexplained)} "
                        "(the backend's own stem init, or a torchvision change)", kind="info"))
    return rows
