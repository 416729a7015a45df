"""Train/eval mode: forward passes of the evaluation path and of the model in training mode."""

from __future__ import annotations

import numpy as np

from benchmark.parity.frameworks import keras, tf, torch  # torch first, then TensorFlow
from torch import nn

from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _keras_bns, _keras_layers, _torch_bns


def _torch_bn_state(model) -> list[np.ndarray]:
    return [b.detach().cpu().numpy().copy() for n, b in model.named_buffers() if b.dtype.is_floating_point]


def _keras_bn_state(model) -> list[np.ndarray]:
    return [np.asarray(v).copy() for layer in _keras_bns(model) for v in (layer.moving_mean, layer.moving_variance)]


def _same_arrays(xs, ys) -> bool:
    return len(xs) == len(ys) and all(np.array_equal(x, y) for x, y in zip(xs, ys))


def _has_torch_noise(model) -> bool:
    from torchvision.ops import StochasticDepth

    return any((isinstance(m, nn.Dropout) or isinstance(m, StochasticDepth)) and m.p > 0 for m in model.modules())


def _has_keras_noise(model) -> bool:
    return any((isinstance(layer, keras.layers.Dropout) and layer.rate > 0)
               or (type(layer).__name__ == "StochasticDepth" and getattr(layer, "drop_path_rate", 0) > 0)
               for layer in _keras_layers(model))


def check_modes(a: Arms) -> list[Finding]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, a.size, a.size, 3), dtype=np.uint8)
    labels = rng.integers(0, a.classes, 4).astype(np.int64)

    # evaluation path of each trainer, twice, on two images
    a.tm.train()  # predict must switch to eval itself
    before = _torch_bn_state(a.tm)
    l1, p1 = a.torch.predict(images[:2], labels[:2])
    l2, p2 = a.torch.predict(images[:2], labels[:2])
    t_eval_frozen, t_eval_det = _same_arrays(before, _torch_bn_state(a.tm)), l1 == l2 and np.array_equal(p1, p2)

    x = a.keras.normalize(tf.constant(images))
    y = tf.constant(labels.astype(np.int32))
    before = _keras_bn_state(a.km)
    kl1, kp1 = a.keras._eval_step_fn(x[:2], y[:2])
    kl2, kp2 = a.keras._eval_step_fn(x[:2], y[:2])
    k_eval_frozen = _same_arrays(before, _keras_bn_state(a.km))
    k_eval_det = float(kl1) == float(kl2) and np.array_equal(np.asarray(kp1), np.asarray(kp2))

    # training mode: a second forward differs when dropout or drop path is active. Drop path on
    # 4 images can drop nothing by chance: arms that have such layers get up to 3 tries.
    xt = a.torch.normalize(torch.from_numpy(images))
    a.tm.train()
    before = _torch_bn_state(a.tm)
    torch.manual_seed(0)
    with torch.no_grad():
        o1 = a.tm(xt).float().cpu().numpy()
        for _ in range(3 if _has_torch_noise(a.tm) else 1):
            # exact comparison: at initialization ConvNeXt's layer scale (1e-6) makes a dropped
            # branch change the logits by ~1e-6 only; the CPU kernels are deterministic
            t_stochastic = not np.array_equal(o1, a.tm(xt).float().cpu().numpy())
            if t_stochastic:
                break
    a.tm.eval()
    t_updates = not _same_arrays(before, _torch_bn_state(a.tm))
    before = _keras_bn_state(a.km)
    q1 = np.asarray(tf.cast(a.km(x, training=True), tf.float32))
    for _ in range(3 if _has_keras_noise(a.km) else 1):
        k_stochastic = not np.array_equal(q1, np.asarray(tf.cast(a.km(x, training=True), tf.float32)))
        if k_stochastic:
            break
    k_updates = not _same_arrays(before, _keras_bn_state(a.km))
    has_bn = bool(_torch_bns(a.tm) or _keras_bns(a.km))

    def yes(v):
        return "yes" if v else "no"

    rows = [
        Finding("Train/eval mode", "evaluation path leaves normalization statistics unchanged",
                f"{yes(t_eval_frozen)} (Trainer.predict, model.eval())", f"{yes(k_eval_frozen)} (eval step, training=False)",
                t_eval_frozen and k_eval_frozen,
                "both evaluate with frozen statistics" if t_eval_frozen and k_eval_frozen
                else "evaluation changes the model in one arm"),
        Finding("Train/eval mode", "evaluation path is deterministic (dropout/drop path off)", yes(t_eval_det),
                yes(k_eval_det), t_eval_det and k_eval_det,
                "both evaluate without stochastic layers" if t_eval_det and k_eval_det
                else "evaluation is stochastic in one arm"),
    ]
    if has_bn:
        rows.append(Finding("Train/eval mode", "training mode updates BatchNorm statistics", yes(t_updates),
                            yes(k_updates), t_updates == k_updates,
                            "both" if t_updates == k_updates else "one arm never updates its statistics"))
    rows.append(Finding(
        "Train/eval mode", "training-mode forward is stochastic (dropout / stochastic depth active)",
        yes(t_stochastic), yes(k_stochastic), t_stochastic == k_stochastic,
        "same" if t_stochastic == k_stochastic else
        "measured confirmation of the Regularization rows: only one arm injects noise while training",
    ))
    return rows
