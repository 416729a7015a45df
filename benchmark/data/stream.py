"""The shared stream of training batches of the aligned protocol (docs/protocol.md §11).

Under ``protocol.data=aligned`` the shuffle order, the crop offsets and the flips of
every epoch are drawn here, with NumPy, from (seed, epoch) alone, and each backend only
applies them. Both arms therefore see the same augmented images in the same order and
in the same order within a batch; and since an epoch's draws depend on nothing carried
from the previous one, a resumed run continues the stream with nothing to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Mixed into the seed so this stream never coincides with another NumPy stream of the seed.
STREAM_TAG = 0x5EED_DA7A


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's draws, by position in the epoch: image `order[j]` is cropped at
    (`top[j]`, `left[j]`) of its zero-padded copy and flipped when `flip[j]`."""

    order: np.ndarray  # int64 (n,)
    top: np.ndarray  # int32 (n,) in [0, 2 * padding]
    left: np.ndarray  # int32 (n,)
    flip: np.ndarray  # bool (n,)

    def batch(self, b: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(indices, top, left, flip) of batch `b`, sorted by image index: a memory-mapped
        cache is then read sequentially, and both backends stack the batch in one order."""
        window = slice(b * batch_size, (b + 1) * batch_size)
        by_index = np.argsort(self.order[window], kind="stable")
        return tuple(a[window][by_index] for a in (self.order, self.top, self.left, self.flip))  # type: ignore[return-value]

    def batches(self, batch_size: int) -> int:
        """Full batches in the epoch (the last incomplete one is dropped)."""
        return len(self.order) // batch_size


def epoch_plan(seed: int, epoch: int, n: int, padding: int) -> EpochPlan:
    """The draws of 0-based `epoch` for `n` training images and crop `padding`."""
    rng = np.random.default_rng([STREAM_TAG, int(seed), int(epoch)])
    order = rng.permutation(n).astype(np.int64)
    top, left = rng.integers(0, 2 * padding + 1, size=(2, n), dtype=np.int32)
    flip = rng.random(n) < 0.5
    return EpochPlan(order, top, left, flip)
