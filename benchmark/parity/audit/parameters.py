"""Parameters: trainable, statistics, frozen and total counts of the two built models."""

from __future__ import annotations

from benchmark.backends.keras import models as kmodels
from benchmark.backends.pytorch.models import parameter_counts as torch_parameter_counts
from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _n, _pct


def check_parameters(a: Arms) -> list[Finding]:
    t = torch_parameter_counts(a.tm)
    k = kmodels.parameter_counts(a.km)
    t_total = t["trainable"] + t["non_trainable"] + t["buffers"]
    k_total = int(a.km.count_params())
    rows = []
    diff = k["trainable"] - t["trainable"]
    impact = ("identical trainable parameter count" if diff == 0 else
              f"Keras has {diff:+,} trainable parameters ({_pct(k['trainable'], t['trainable'])}); "
              "see Architecture for where they come from")
    rows.append(Finding("Parameters", "trainable parameters", _n(t["trainable"]), _n(k["trainable"]), diff == 0, impact))
    rows.append(Finding(
        "Parameters", "BatchNorm running/moving statistics", f"{_n(t['buffers'])} (buffers)",
        f"{_n(k['buffers'])} (non-trainable weights)", t["buffers"] == k["buffers"],
        "same statistics, kept as buffers in PyTorch and as non-trainable weights in Keras"
        if t["buffers"] == k["buffers"] else "different number of normalization statistics",
    ))
    rows.append(Finding(
        "Parameters", "other non-trainable (frozen) weights", _n(t["non_trainable"]), _n(k["non_trainable"]),
        t["non_trainable"] == k["non_trainable"], "nothing is frozen" if t["non_trainable"] == k["non_trainable"] == 0
        else "frozen weights differ",
    ))
    rows.append(Finding(
        "Parameters", "total (parameters + statistics)", _n(t_total), _n(k_total), t_total == k_total,
        "identical" if t_total == k_total else f"Keras {_pct(k_total, t_total)}; model size and FLOPs nearly equal"
        if abs(k_total - t_total) / max(t_total, 1) < 0.01 else f"Keras {_pct(k_total, t_total)}",
    ))
    return rows
