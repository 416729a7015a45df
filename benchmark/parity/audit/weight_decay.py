"""Weight decay: one step of each trainer's real update that is pure weight decay."""

from __future__ import annotations

from collections import Counter

import numpy as np

from benchmark.parity.frameworks import tf, torch  # torch first, then TensorFlow

from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _close, _counter_str, _fmt, _keras_bns, _keras_lns, _n, _torch_bns, _torch_lns
from benchmark.parity.audit.optimizer import _keras_sgd


def check_weight_decay(a: Arms) -> list[Finding]:
    """Destructive: sets every weight to 1 and steps both optimizers once. Run last."""
    wd_cfg = float(a.cfg.optim.weight_decay)
    group = a.torch.optimizer.param_groups[0]
    m_t = float(group["momentum"])
    # the LR both trainers use after warmup
    a.keras.step.assign(min(a.schedule.warmup_steps, max(a.schedule.total_steps - 1, 0)))
    lr = float(_keras_sgd(a).learning_rate)
    if lr == 0.0:
        lr = a.schedule.base_lr
        a.keras.step.assign(0)

    # PyTorch: zero loss gradient, every parameter 1
    t_opt = a.torch.optimizer
    t_params = [p for g in t_opt.param_groups for p in g["params"]]
    t_wd = sorted({float(g["weight_decay"]) for g in t_opt.param_groups})
    t_opt.state.clear()
    with torch.no_grad():
        for p in t_params:
            p.fill_(1.0)
            p.grad = torch.zeros_like(p)
    for g in t_opt.param_groups:
        g["lr"] = lr
    t_opt.step()
    t_mult = [float((1.0 - p.detach().double().mean()) / (lr * wd_cfg)) if wd_cfg else 0.0 for p in t_params]

    # Keras: the trainer's own update (_apply), zero loss gradient, every variable 1
    k_vars = list(a.keras.variables)
    for v in k_vars:
        v.assign(tf.ones(v.shape, v.dtype))
    lr_k = float(_keras_sgd(a).learning_rate)
    a.keras._apply([tf.zeros(v.shape, v.dtype) for v in k_vars])
    k_mult = [float((1.0 - np.asarray(v, np.float64).mean()) / (lr_k * wd_cfg)) if wd_cfg else 0.0 for v in k_vars]

    def classify(mults, momentum):
        decayed = [x for x in mults if abs(x) > 1e-3]
        kinds = Counter()
        for x in decayed:
            if abs(x - (1 + momentum)) < 1e-2:
                kinds["coupled L2 through momentum"] += 1
            elif abs(x - 1.0) < 1e-2:
                kinds["decoupled (or no momentum)"] += 1
            else:
                kinds[f"x{x:.3g}"] += 1
        return decayed, kinds

    t_dec, t_kinds = classify(t_mult, m_t)
    k_dec, k_kinds = classify(k_mult, float(_keras_sgd(a).momentum))
    t_size = sum(p.numel() for p, x in zip(t_params, t_mult) if abs(x) > 1e-3)
    k_size = sum(int(np.prod(v.shape)) for v, x in zip(k_vars, k_mult) if abs(x) > 1e-3)
    t_total = sum(p.numel() for p in a.tm.parameters() if p.requires_grad)
    k_total = sum(int(np.prod(v.shape)) for v in a.km.trainable_variables)
    t_bn = {id(p) for _, m in _torch_bns(a.tm) + _torch_lns(a.tm) for p in m.parameters()}
    k_bn = {id(v) for layer in _keras_bns(a.km) + _keras_lns(a.km) for v in layer.trainable_weights}
    t_bn_dec = sum(1 for p, x in zip(t_params, t_mult) if id(p) in t_bn and abs(x) > 1e-3)
    k_bn_dec = sum(1 for v, x in zip(k_vars, k_mult) if id(v) in k_bn and abs(x) > 1e-3)
    t_mean = float(np.mean(t_dec)) if t_dec else 0.0
    k_mean = float(np.mean(k_dec)) if k_dec else 0.0

    rows = [
        Finding("Weight decay", "coefficient", ", ".join(_fmt(v) for v in t_wd) + " (optimizer weight_decay)",
                f"{_fmt(a.keras.weight_decay)} (added to the gradients by the trainer)",
                t_wd == [a.keras.weight_decay], "same" if t_wd == [a.keras.weight_decay] else "different coefficient"),
        Finding("Weight decay", "formulation (measured: first-step shrink / (lr * wd))",
                f"{t_mean:.4g} = 1 + momentum: {_counter_str(t_kinds)}",
                f"{k_mean:.4g} = 1 + momentum: {_counter_str(k_kinds)}" if k_kinds else "no decay measured",
                set(t_kinds) == set(k_kinds) and _close(t_mean, k_mean, 1e-3),
                "PyTorch's coupled L2 in both: the Keras trainer adds wd*w to every gradient before SGD, so the decay "
                "goes through Nesterov momentum like torch.optim.SGD(weight_decay=...); Keras' own (decoupled) "
                "weight_decay is not used (docs/protocol.md §8 pitfall removed)" if set(t_kinds) == set(k_kinds)
                else "the decay is applied differently (coupled vs decoupled)",
        ),
        Finding("Weight decay", "variables decayed",
                f"{len(t_dec)} of {len(t_params)} tensors, {_n(t_size)} of {_n(t_total)} values; "
                f"normalization gamma/beta: {t_bn_dec} tensors",
                f"{len(k_dec)} of {len(k_vars)} tensors, {_n(k_size)} of {_n(k_total)} values; "
                f"normalization gamma/beta: {k_bn_dec} tensors",
                (t_size == t_total) == (k_size == k_total) and bool(t_bn_dec) == bool(k_bn_dec),
                ("every trainable variable is decayed in both, normalization parameters and biases included"
                 if t_size == t_total and k_size == k_total else "the decayed sets differ")
                + (f"; Keras decays {len(k_dec) - len(t_dec):+d} more tensors ({k_size - t_size:+,} values): "
                   "its extra convolution biases" if k_size != t_size else ""),
        ),
        Finding("Weight decay", "Keras optimizer's own weight_decay (decoupled)", "n/a",
                str(getattr(_keras_sgd(a), "weight_decay", None)), True,
                "unset: no decoupled decay on top of the coupled L2", kind="info"),
    ]
    return rows
