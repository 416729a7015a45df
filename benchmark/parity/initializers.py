"""Which initializer a set of initial weights fits: by standard deviation against each
candidate's formula (from the fans the framework's own initializers use) and by the
shape of the distribution (excess kurtosis: uniform -1.2, truncated normal about -0.8,
normal 0)."""

from __future__ import annotations

import math

import numpy as np


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# (id, label, allowed distribution shapes, std as a function of (fan_in, fan_out))
CANDIDATES = (
    (
        "kaiming_normal_fan_out",
        "kaiming normal, fan_out (std sqrt(2/fan_out))",
        ("normal",),
        lambda fi, fo: math.sqrt(2 / fo),
    ),
    (
        "kaiming_normal_fan_in",
        "kaiming normal, fan_in (std sqrt(2/fan_in))",
        ("normal",),
        lambda fi, fo: math.sqrt(2 / fi),
    ),
    ("normal_0.01", "normal(0, 0.01)", ("normal",), lambda fi, fo: 0.01),
    ("trunc_normal_0.02", "truncated normal, std 0.02", ("normal", "truncated normal"), lambda fi, fo: 0.02),
    (
        "torch_default_uniform",
        "uniform +-1/sqrt(fan_in) (kaiming_uniform a=sqrt(5), torch's nn default)",
        ("uniform",),
        lambda fi, fo: math.sqrt(1 / (3 * fi)),
    ),
    (
        "glorot_uniform",
        "glorot uniform +-sqrt(6/(fan_in+fan_out))",
        ("uniform",),
        lambda fi, fo: math.sqrt(2 / (fi + fo)),
    ),
    ("he_uniform", "he uniform +-sqrt(6/fan_in)", ("uniform",), lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_uniform", "lecun uniform +-sqrt(3/fan_in)", ("uniform",), lambda fi, fo: math.sqrt(1 / fi)),
    ("glorot_normal", "glorot normal (truncated)", ("truncated normal",), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("he_normal", "he normal (truncated), fan_in", ("truncated normal",), lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_normal", "lecun normal (truncated)", ("truncated normal",), lambda fi, fo: math.sqrt(1 / fi)),
)


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
    kurt = float((z**4).mean() - 3.0)
    if kurt < -0.95:
        return "uniform", kurt
    if kurt < -0.3:
        return "truncated normal", kurt
    return "normal", kurt


def fit_initializer(layers: list[tuple[np.ndarray, int, int]]) -> dict:
    """Best candidate scheme for (weights, fan_in, fan_out) of a family of layers."""
    if not layers:
        return {"id": "none", "label": "none", "text": "none"}
    stds = [float(w.std()) for w, _, _ in layers]
    if max(stds) == 0.0:
        values = sorted({float(w.ravel()[0]) for w, _, _ in layers})
        return {"id": f"constant_{values}", "label": f"constant {values}", "text": f"constant {values}"}
    shape, kurt = _distribution([w for w, _, _ in layers])
    best = None
    for cid, label, shapes, std_fn in CANDIDATES:
        if shape not in shapes:
            continue
        ratios = np.array([s / std_fn(fi, fo) for s, (_, fi, fo) in zip(stds, layers, strict=True)])
        score = float(np.median(np.abs(np.log(ratios))))
        if best is None or score < best[0]:
            best = (score, cid, label, ratios)
    if best is None or best[0] > math.log(1.15):
        lo, hi = min(stds), max(stds)
        return {
            "id": f"unrecognized_{shape}",
            "label": f"unrecognized {shape}",
            "text": f"unrecognized {shape} (std {_fmt(lo)}-{_fmt(hi)}, excess kurtosis {kurt:+.2f})",
        }
    _, cid, label, ratios = best
    text = (
        f"{label}; measured std/expected median {np.median(ratios):.2f} (range {ratios.min():.2f}-{ratios.max():.2f}) "
        f"over {len(layers)} layers, {shape} (excess kurtosis {kurt:+.2f})"
    )
    return {"id": cid, "label": label, "text": text}
