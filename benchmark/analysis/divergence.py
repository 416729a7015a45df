"""Framework noise vs seed noise, epoch by epoch (docs/protocol.md §11).

Under the aligned protocol a seed's two arms start from the same weights and see the
same batches, so whatever separates them is the framework (kernels, rounding, the
dropout/drop-path draws). Per comparison (dataset, model, precision, protocol, variant,
arm pair), per epoch and per curve (train loss, val accuracy):

- framework_gap: mean over seeds of |A_s − B_s|, the two frameworks on the same seed;
- seed_spread_a / seed_spread_b: mean over pairs of seeds of |X_s − X_s'| within one
  arm, how far two seeds of one framework lie apart;
- ratio: framework_gap / mean(seed_spread_a, seed_spread_b).

A ratio well below 1 means the frameworks drift apart more slowly than seeds do: the
framework is a smaller source of variation than the seed. The native protocol gets the
same table for contrast (there a seed's two arms share nothing but the data split).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analysis.stats import GROUP, default_pairs, with_arm
from benchmark.spec.runkey import MODE_FIELD, PAIR_FIELD, REQUIRED_KEY

CURVES = {"train_loss": "train loss", "val_accuracy": "val accuracy"}
DIVERGENCE_COLUMNS = (
    *GROUP,
    "arm_a",
    "arm_b",
    "curve",
    "epoch",
    "n_seeds",
    "framework_gap",
    "seed_spread_a",
    "seed_spread_b",
    "ratio",
)


def _pairwise_spread(x: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """Per row (epoch): mean |x_s − x_s'| over the pairs of paired seeds (NaN below two)."""
    diffs = np.abs(x[:, :, None] - x[:, None, :])
    both = paired[:, :, None] & paired[:, None, :]
    upper = np.triu(np.ones(both.shape[1:], bool), k=1)[None]
    mask = both & upper
    with np.errstate(invalid="ignore"):
        return np.where(mask.sum((1, 2)) > 0, np.where(mask, diffs, 0.0).sum((1, 2)) / mask.sum((1, 2)), np.nan)


def divergence(curves: pd.DataFrame) -> pd.DataFrame:
    """DIVERGENCE_COLUMNS for every comparison and epoch with at least two paired seeds."""
    if curves.empty:
        return pd.DataFrame(columns=list(DIVERGENCE_COLUMNS))
    runs = with_arm(curves.dropna(subset=list(REQUIRED_KEY)).assign(**{MODE_FIELD: "unknown"}))
    # the newest directory of an (arm, seed, epoch) when a sweep holds a run twice
    runs = runs.sort_values("run_dir").drop_duplicates([*GROUP, "arm", PAIR_FIELD, "epoch"], keep="last")
    frames = []
    for group, mine in runs.groupby(list(GROUP), sort=True):
        for pair in default_pairs(mine["arm"]):
            for curve in CURVES:
                wide = mine.pivot_table(index="epoch", columns=["arm", PAIR_FIELD], values=curve)
                if pair.first not in wide.columns.get_level_values(
                    0
                ) or pair.second not in wide.columns.get_level_values(0):
                    continue
                seeds = sorted(set(wide[pair.first].columns) | set(wide[pair.second].columns))
                a = wide[pair.first].reindex(columns=seeds).to_numpy(float)
                b = wide[pair.second].reindex(columns=seeds).to_numpy(float)
                paired = np.isfinite(a) & np.isfinite(b)
                n = paired.sum(axis=1)
                with np.errstate(invalid="ignore"):
                    gap = np.where(paired, np.abs(a - b), 0.0).sum(axis=1) / np.where(n > 0, n, np.nan)
                spread_a, spread_b = _pairwise_spread(a, paired), _pairwise_spread(b, paired)
                seed_level = (spread_a + spread_b) / 2
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = np.where(seed_level > 0, gap / seed_level, np.nan)
                frame = pd.DataFrame(
                    {
                        "epoch": wide.index.astype(int),
                        "n_seeds": n,
                        "framework_gap": gap,
                        "seed_spread_a": spread_a,
                        "seed_spread_b": spread_b,
                        "ratio": ratio,
                    }
                )
                frames.append(
                    frame[frame["n_seeds"] >= 2].assign(
                        **dict(zip(GROUP, group, strict=True)), arm_a=pair.first, arm_b=pair.second, curve=curve
                    )
                )
    if not frames:
        return pd.DataFrame(columns=list(DIVERGENCE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(DIVERGENCE_COLUMNS)]


def verdict(rows: pd.DataFrame) -> str:
    """One sentence on one comparison and curve: do the frameworks drift apart faster than seeds?"""
    last = rows.sort_values("epoch").iloc[-1]
    mean_ratio = float(rows["ratio"].mean())
    if not np.isfinite(mean_ratio):
        return f"{CURVES[last['curve']]}: no seed spread to compare with"
    if mean_ratio < 0.5:
        word = "drift apart more slowly than seeds do"
    elif mean_ratio <= 1.5:
        word = "drift apart about as fast as seeds do"
    else:
        word = "drift apart faster than seeds do"
    return (
        f"{CURVES[last['curve']]}: the frameworks {word} (framework gap / seed spread {mean_ratio:.2f} on "
        f"average over {len(rows)} epochs, {last['ratio']:.2f} at epoch {int(last['epoch'])}; "
        f"{int(last['n_seeds'])} seeds)"
    )


def divergence_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    lines = [
        "## Framework noise vs seed noise",
        "",
        "Per epoch, |A − B| on the same seed against |seed − seed'| within one arm (divergence.csv, "
        "plots/divergence_*.png; docs/protocol.md §11).",
        "",
    ]
    for group, rows in table.groupby([*GROUP, "arm_a", "arm_b"], sort=True):
        scope = " × ".join(str(v) for v in group[: len(GROUP)] if v != "")
        lines.append(f"**{scope}, {group[-2]} vs {group[-1]}**")
        lines.append("")
        lines.extend(f"- {verdict(curve_rows)}" for _, curve_rows in rows.groupby("curve", sort=False))
        lines.append("")
    return "\n".join(lines).rstrip()
