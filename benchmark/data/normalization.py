"""Per-channel statistics and the normalization both backends must reproduce."""

from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and (population) std per channel of uint8 NHWC images scaled to [0, 1]."""
    total = np.zeros(3, dtype=np.float64)
    total_sq = np.zeros(3, dtype=np.float64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    count = len(images) * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(total_sq / count - np.square(mean))
    return [float(v) for v in mean], [float(v) for v in std]


def normalize_reference(images: np.ndarray, mean, std) -> np.ndarray:
    """The protocol's normalization, NHWC float32: (x / 255 - mean) / std.

    Each backend implements this with its own ops; tests compare them to this.
    """
    x = images.astype(np.float32) / np.float32(255.0)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
