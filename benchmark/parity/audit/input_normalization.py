"""Input normalization: each trainer's normalizer applied to the same uint8 batch."""

from __future__ import annotations

import numpy as np

from benchmark.parity.frameworks import tf, torch  # torch first, then TensorFlow

from benchmark.parity.audit.arms import Arms, Finding


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def check_input_normalization(a: Arms) -> list[Finding]:
    tn, kn = a.torch.normalize, a.keras.normalize
    t_mean, t_std = tn.mean.flatten().cpu().numpy(), tn.std.flatten().cpu().numpy()
    k_mean, k_std = np.asarray(kn.mean).ravel(), np.asarray(kn.std).ravel()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, a.size, a.size, 3), dtype=np.uint8)
    t_x = tn(torch.from_numpy(images)).permute(0, 2, 3, 1).cpu().numpy()
    k_x = np.asarray(kn(tf.constant(images)))
    diff = float(np.abs(t_x - k_x).max())
    consts = np.array_equal(t_mean, k_mean) and np.array_equal(t_std, k_std)
    note = "" if a.cfg.dataset.mean is not None else " (null in the config: taken from the prepared cache at run time)"
    return [
        Finding("Input normalization", "mean / std", f"{_rounded(t_mean)} / {_rounded(t_std)}{note}",
                f"{_rounded(k_mean)} / {_rounded(k_std)}{note}", consts,
                "same per-channel constants of the train split" if consts else "different constants"),
        Finding("Input normalization", "max |difference| on the same uint8 batch", f"{diff:.2g}", f"{diff:.2g}",
                diff < 1e-5, "identical inputs up to float rounding (docs/protocol.md §3: < 1e-5)" if diff < 1e-5
                else "the inputs differ"),
    ]
