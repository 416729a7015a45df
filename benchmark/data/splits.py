"""Fixed stratified splits (docs/protocol.md §3): always scikit-learn, always seed 42."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

SPLIT_SEED = 42


def stratified_holdout(labels: np.ndarray, holdout_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) of a stratified split; both sorted, disjoint, covering all."""
    indices = np.arange(len(labels))
    kept, held_out = train_test_split(indices, test_size=holdout_size, stratify=labels, random_state=SPLIT_SEED)
    return np.sort(kept), np.sort(held_out)
