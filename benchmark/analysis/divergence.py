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

from itertools import combinations

import numpy as np
import pandas as pd

from benchmark.analysis.stats import GROUP, default_pairs, with_arm
from benchmark.runkey import KEY, MODE_FIELD, PAIR_FIELD

CURVES = {"train_loss": "train loss", "val_accuracy": "val accuracy"}
DIVERGENCE_COLUMNS = (*GROUP, "arm_a", "arm_b", "curve", "epoch", "n_seeds", "framework_gap", "seed_spread_a",
                      "seed_spread_b", "ratio")


def _spread(values: pd.Series) -> float:
    """Mean |x_s − x_s'| over the pairs of seeds."""
    x = values.dropna().to_numpy(float)
    pairs = list(combinations(range(len(x)), 2))
    return float(np.mean([abs(x[i] - x[j]) for i, j in pairs])) if pairs else np.nan


def divergence(curves: pd.DataFrame) -> pd.DataFrame:
    """DIVERGENCE_COLUMNS for every comparison with at least two paired seeds."""
    if curves.empty:
        return pd.DataFrame(columns=list(DIVERGENCE_COLUMNS))
    runs = with_arm(curves.dropna(subset=list(KEY)).assign(**{MODE_FIELD: "unknown"}))
    # the newest directory of an (arm, seed, epoch) when a sweep holds a run twice
    runs = runs.sort_values("run_dir").drop_duplicates([*GROUP, "arm", PAIR_FIELD, "epoch"], keep="last")
    rows = []
    for group, mine in runs.groupby(list(GROUP), sort=True):
        for pair in default_pairs(mine["arm"]):
            both = mine[mine["arm"].isin([pair.first, pair.second])]
            for curve in CURVES:
                wide = both.pivot_table(index=["epoch", PAIR_FIELD], columns="arm", values=curve)
                if pair.first not in wide or pair.second not in wide:
                    continue
                for epoch, at in wide.groupby(level="epoch"):
                    paired = at.dropna(subset=[pair.first, pair.second])
                    if len(paired) < 2:
                        continue
                    gap = float((paired[pair.first] - paired[pair.second]).abs().mean())
                    spread_a, spread_b = _spread(paired[pair.first]), _spread(paired[pair.second])
                    seed_level = np.nanmean([spread_a, spread_b])
                    rows.append({**dict(zip(GROUP, group)), "arm_a": pair.first, "arm_b": pair.second, "curve": curve,
                                 "epoch": int(epoch), "n_seeds": len(paired), "framework_gap": gap,
                                 "seed_spread_a": spread_a, "seed_spread_b": spread_b,
                                 "ratio": gap / seed_level if seed_level > 0 else np.nan})
    return pd.DataFrame(rows, columns=list(DIVERGENCE_COLUMNS))


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
    return (f"{CURVES[last['curve']]}: the frameworks {word} (framework gap / seed spread {mean_ratio:.2f} on "
            f"average over {len(rows)} epochs, {last['ratio']:.2f} at epoch {int(last['epoch'])}; "
            f"{int(last['n_seeds'])} seeds)")


def divergence_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    lines = ["## Framework noise vs seed noise", "",
             "Per epoch, |A − B| on the same seed against |seed − seed'| within one arm (divergence.csv, "
             "plots/divergence_*.png; docs/protocol.md §11).", ""]
    for group, rows in table.groupby([*GROUP, "arm_a", "arm_b"], sort=True):
        scope = " × ".join(str(v) for v in group[:len(GROUP)] if v != "")
        lines.append(f"**{scope}, {group[-2]} vs {group[-1]}**")
        lines.append("")
        lines.extend(f"- {verdict(curve_rows)}" for _, curve_rows in rows.groupby("curve", sort=False))
        lines.append("")
    return "\n".join(lines).rstrip()
