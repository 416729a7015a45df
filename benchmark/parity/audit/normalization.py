"""BatchNorm and LayerNorm: the normalization layers paired in order of appearance."""

from __future__ import annotations

from collections import Counter

from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _close, _fmt, _keras_bns, _keras_lns, _names, _torch_bns, _torch_lns


def _bn_torch_convention(momentum) -> str:
    return "cumulative average (None)" if momentum is None else _fmt(momentum)


def check_batchnorm(a: Arms) -> list[Finding]:
    t_bns, k_bns, zoo_bns = _torch_bns(a.tm), _keras_bns(a.km), _keras_bns(a.zoo)
    if not t_bns and not k_bns:
        return [Finding("BatchNorm", "BatchNorm layers", "none", "none", True,
                        "no BatchNorm in this architecture (see LayerNorm)")]
    rows = [Finding("BatchNorm", "BatchNorm layers", str(len(t_bns)), str(len(k_bns)), len(t_bns) == len(k_bns),
                    "one Keras layer per PyTorch layer, paired in order of appearance" if len(t_bns) == len(k_bns)
                    else f"counts differ: only the first {min(len(t_bns), len(k_bns))} are paired")]
    pairs = list(zip(t_bns, k_bns))
    combos: dict[tuple, list] = {}
    mismatched = []
    channel_swaps = []
    for (tn, t), k in pairs:
        tm_ = None if t.momentum is None else float(t.momentum)
        km_ = 1.0 - float(k.momentum)  # PyTorch's convention
        key = (tm_, float(t.eps), round(km_, 12), float(k.epsilon))
        combos.setdefault(key, []).append((tn, k.name))
        if tm_ is None or not _close(tm_, km_, 1e-9) or not _close(float(t.eps), float(k.epsilon), 1e-9):
            mismatched.append(f"{tn} <-> {k.name}")
        if t.num_features != int(k.gamma.shape[0]):
            channel_swaps.append(f"{tn} <-> {k.name}")
    for (tm_, te, km_, ke), members in combos.items():
        same = tm_ is not None and _close(tm_, km_, 1e-9) and _close(te, ke, 1e-9)
        rows.append(Finding(
            "BatchNorm", f"momentum / epsilon ({len(members)} layers)",
            f"momentum {_bn_torch_convention(tm_)}, eps {_fmt(te)}",
            f"momentum {_fmt(km_)} (Keras {_fmt(1 - km_)}), eps {_fmt(ke)}", same,
            "equal: the Keras backend sets PyTorch's defaults on every BatchNorm on purpose "
            "(benchmark/backends/keras/models.py); removed as a source of difference" if same else
            "the moving statistics used at evaluation follow the weights at different speeds and the "
            "normalization differs by eps: evaluation accuracy can differ, mostly on short runs",
        ))
    rows.append(Finding("BatchNorm", "mismatched layers (momentum or eps)", _names(mismatched) if mismatched else "none",
                        _names(mismatched) if mismatched else "none", not mismatched,
                        "every paired layer has the same momentum and eps" if not mismatched else
                        "these layers normalize differently"))
    affine_t = all(m.affine for _, m in t_bns)
    affine_k = all(layer.center and layer.scale for layer in k_bns)
    rows.append(Finding("BatchNorm", "learned scale and shift (gamma, beta)", "yes" if affine_t else "not all",
                        "yes" if affine_k else "not all", affine_t == affine_k, "same" if affine_t == affine_k
                        else "different number of learned normalization parameters"))
    if channel_swaps:
        rows.append(Finding(
            "BatchNorm", "pairs in order of appearance with different channel counts", _names(channel_swaps),
            _names(channel_swaps), True,
            "the two graphs list the shortcut BatchNorm of a downsampling block at a different position "
            "(PyTorch after the block's last BN, Keras before); every BN has the same settings, so the pairing "
            "order does not change the verdict", kind="info",
        ))
    zoo = Counter((round(1.0 - float(b.momentum), 12), float(b.epsilon)) for b in zoo_bns)
    torch_defaults = Counter((None if m.momentum is None else float(m.momentum), float(m.eps)) for _, m in t_bns)
    zoo_desc = "; ".join(f"momentum {_fmt(m)} (Keras {_fmt(1 - m)}), eps {_fmt(e)} on {n} layers"
                         for (m, e), n in zoo.items())
    t_desc = "; ".join(f"momentum {_bn_torch_convention(m)}, eps {_fmt(e)} on {n} layers"
                       for (m, e), n in torch_defaults.items())
    zoo_same = set(zoo) == set((m, e) for (m, e) in torch_defaults)
    rows.append(Finding(
        "BatchNorm", "Keras zoo default (keras.applications, not used)", t_desc, zoo_desc, zoo_same,
        "what an unmodified keras.applications model would use; the backend overrides it (see above). "
        "Left in place, the slower moving statistics (momentum closer to 1 in Keras' convention) lag the "
        "weights and depress evaluation accuracy on short runs" if not zoo_same else "the zoo default already matches",
        kind="info",
    ))
    return rows


def check_layernorm(a: Arms) -> list[Finding]:
    t_lns, k_lns = _torch_lns(a.tm), _keras_lns(a.km)
    if not t_lns and not k_lns:
        return []
    rows = [Finding("LayerNorm", "LayerNorm layers", str(len(t_lns)), str(len(k_lns)), len(t_lns) == len(k_lns),
                    "one Keras layer per PyTorch layer" if len(t_lns) == len(k_lns) else "counts differ")]
    combos = Counter()
    mismatched = []
    for (tn, t), k in zip(t_lns, k_lns):
        combos[(float(t.eps), float(k.epsilon), bool(t.elementwise_affine), bool(k.center and k.scale))] += 1
        if not _close(float(t.eps), float(k.epsilon), 1e-9):
            mismatched.append(f"{tn} <-> {k.name}")
    for (te, ke, ta, ka), n in combos.items():
        same = _close(te, ke, 1e-9) and ta == ka
        rows.append(Finding("LayerNorm", f"epsilon / affine ({n} layers)", f"eps {_fmt(te)}, affine {ta}",
                            f"eps {_fmt(ke)}, affine {ka}", same,
                            "same normalization" if same else "different epsilon or affine parameters"))
    rows.append(Finding("LayerNorm", "mismatched layers (eps)", _names(mismatched) if mismatched else "none",
                        _names(mismatched) if mismatched else "none", not mismatched,
                        "every paired layer has the same eps" if not mismatched else "these layers differ"))
    return rows
