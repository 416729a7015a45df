"""Attribution of a gap between arms to the zoo differences (docs/protocol.md §11).

Where a comparison ran under the native protocol and under the aligned one (same
dataset, model, precision and arm pair), the zoo effect on a metric is

    zoo = Δ_native − Δ_aligned

the part of the native gap that the aligned protocol removes. It is estimated per seed,
zoo_s = d_native,s − d_aligned,s (each d the paired difference A − B of that seed), with a
percentile bootstrap CI over the seeds present in both protocols, the same bootstrap as
the paired statistics. Δ_native and Δ_aligned are given on those seeds too (with their
own bootstrap CIs), so the three numbers of a row add up; with every seed in both they
equal statistical_results.csv's deltas. A knob ablation (``protocol=aligned protocol.init=native``, a
variant of the aligned runs) is attributed the same way against the native runs: its
row says how much of the native gap remains with that one difference switched back on.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from benchmark.analysis import verdicts
from benchmark.analysis.stats import REL_TOL, bootstrap_ci, metric_for
from benchmark.spec.runkey import GROUP_FIELDS, PAIR_FIELD, VARIANT_FIELD

PROTOCOL = "protocol"
NATIVE = "native"
# what identifies one comparison, besides its protocol and variant
_SCOPE = [f for f in GROUP_FIELDS if f != PROTOCOL]
_COMPARISON = ["metric", "arm_a", "arm_b", "mode_a", "mode_b"]

ATTRIBUTION_COLUMNS = (
    *_SCOPE,
    "metric",
    "arm_a",
    "arm_b",
    "mode_a",  # the execution modes: one arm pair may be compared in several combinations
    "mode_b",
    "protocol",
    VARIANT_FIELD,
    "n_seeds",
    "seeds",
    "delta_native",
    "ci_native_low",
    "ci_native_high",
    "delta_aligned",
    "ci_aligned_low",
    "ci_aligned_high",
    "zoo_effect",
    "zoo_ci_low",
    "zoo_ci_high",
    "zoo_share",
    "zoo_t95_low",  # the zoo effect's 95% t-interval: is it distinguishable from 0?
    "zoo_t95_high",
    "zoo_margin",  # the metric's margin (statistics' `margin`, of the native comparison)
    "zoo_t90_low",  # 90% t-interval: inside ±zoo_margin is equivalence to 0
    "zoo_t90_high",
    "zoo_tost_p",
    "zoo_verdict",
    "sentence",
)


def _baseline_variant(variant: str) -> str:
    """The native runs' variant that a protocol variant is measured against: its own
    overrides without the protocol knobs (protocol.init=native,epochs=3 -> epochs=3)."""
    parts = [p for p in variant.split(",") if p and not re.match(r"protocol\.", p)]
    return ",".join(parts)


def _fmt(value: float, scale: float) -> str:
    return f"{value * scale:+.2f}"


def _sentence(row: dict, unit: str, scale: float, label: str) -> str:
    native = (
        f"{_fmt(row['delta_native'], scale)} "
        f"[{_fmt(row['ci_native_low'], scale)}, {_fmt(row['ci_native_high'], scale)}]"
    )
    aligned = (
        f"{_fmt(row['delta_aligned'], scale)} "
        f"[{_fmt(row['ci_aligned_low'], scale)}, {_fmt(row['ci_aligned_high'], scale)}]"
    )
    zoo = f"{_fmt(row['zoo_effect'], scale)} [{_fmt(row['zoo_ci_low'], scale)}, {_fmt(row['zoo_ci_high'], scale)}]"
    what = "aligned" if not row[VARIANT_FIELD] else f"aligned except {row[VARIANT_FIELD]}"
    text = (
        f"{row['arm_a']} − {row['arm_b']} in {label}: {native} {unit} native, {aligned} {unit} {what}; "
        f"the differences the protocol removes account for {zoo} {unit}"
    )
    native_sure = row["ci_native_low"] > 0 or row["ci_native_high"] < 0
    if np.isfinite(row["zoo_share"]) and native_sure:
        text += f" ({row['zoo_share'] * 100:.0f}% of the native gap)"
    elif not native_sure:
        text += " (the native gap's CI includes 0, so no share of it is stated)"
    zoo_sure = row["zoo_ci_low"] > 0 or row["zoo_ci_high"] < 0
    text += ". The zoo effect's CI excludes 0." if zoo_sure else ". The zoo effect's CI includes 0."
    if not np.isfinite(row["zoo_t95_low"]):
        return text
    within = f"±{row['zoo_margin'] * scale:.2f} {unit}" if np.isfinite(row["zoo_margin"]) else "no margin"
    return text + (
        f" Against 0 within {within}: **{row['zoo_verdict']}** (95% t-interval "
        f"[{_fmt(row['zoo_t95_low'], scale)}, {_fmt(row['zoo_t95_high'], scale)}], TOST p = {row['zoo_tost_p']:.3g})."
    )


def zoo_verdict(zoo: np.ndarray, margin: float) -> dict:
    """Whether the zoo effect is distinguishable from 0 (its 95% t-interval excludes 0) and
    whether it is equivalent to 0 within the metric's margin (TOST: its 90% t-interval
    inside ±margin), and the verdict of the two (benchmark.analysis.verdicts)."""
    n = len(zoo)
    # no spread (every seed the same zoo effect): the intervals shrink to the point
    spread = n >= 2 and float(np.ptp(zoo)) > REL_TOL * max(float(np.max(np.abs(zoo))), 1.0)
    if spread:
        t95, t90 = verdicts.t_interval(zoo, 0.95), verdicts.t_interval(zoo, 0.90)
    else:
        point = float(zoo.mean()) if n >= 2 else np.nan
        t95 = t90 = (point, point)
    tost_p = verdicts.tost(zoo, margin, spread=spread)
    distinguishable = bool(np.isfinite(t95[0]) and (t95[0] > 0 or t95[1] < 0))
    return {
        "zoo_t95_low": t95[0],
        "zoo_t95_high": t95[1],
        "zoo_margin": margin,
        "zoo_t90_low": t90[0],
        "zoo_t90_high": t90[1],
        "zoo_tost_p": tost_p,
        "zoo_verdict": verdicts.verdict(distinguishable, tost_p < verdicts.ALPHA),
    }


def attribution(stats: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison and metric that ran natively and under a non-native protocol."""
    if stats.empty or PROTOCOL not in stats.columns:
        return pd.DataFrame(columns=list(ATTRIBUTION_COLUMNS))
    rows = []
    key = [*_SCOPE, *_COMPARISON]
    # time to accuracy is censored (never reached = inf): a mean of its differences is not defined
    stats = stats[~stats["metric"].map(lambda name: metric_for(name).censored)]
    for values, group in stats.groupby(key, dropna=False, sort=True):
        scope = dict(zip(key, values, strict=True))
        natives = group[group[PROTOCOL] == NATIVE]
        for _, other in group[group[PROTOCOL] != NATIVE].iterrows():
            baseline = natives[natives[VARIANT_FIELD] == _baseline_variant(other[VARIANT_FIELD])]
            if baseline.empty:
                continue
            native = baseline.iloc[0]
            if native["n_pairs"] == 0 or other["n_pairs"] == 0:
                continue  # no pair of the two arms under one protocol: no gap to split, nothing to say
            selector = np.logical_and.reduce([pairs[k] == scope[k] for k in key if k in pairs.columns])
            mine = pairs[selector]
            d_native = mine[(mine[PROTOCOL] == NATIVE) & (mine[VARIANT_FIELD] == native[VARIANT_FIELD])]
            d_other = mine[(mine[PROTOCOL] == other[PROTOCOL]) & (mine[VARIANT_FIELD] == other[VARIANT_FIELD])]
            both = d_native[[PAIR_FIELD, "diff"]].merge(
                d_other[[PAIR_FIELD, "diff"]], on=PAIR_FIELD, suffixes=("_native", "_other")
            )
            # all three on the seeds present in both, so that zoo = Δ_native − Δ_aligned exactly
            d_nat_s, d_other_s = both["diff_native"].to_numpy(float), both["diff_other"].to_numpy(float)
            zoo = d_nat_s - d_other_s
            low, high = bootstrap_ci(zoo)
            effect = float(zoo.mean()) if len(zoo) else np.nan
            d_nat = float(d_nat_s.mean()) if len(zoo) else np.nan
            nat_ci, other_ci = bootstrap_ci(d_nat_s), bootstrap_ci(d_other_s)
            row = {
                **{k: scope[k] for k in _SCOPE},
                "metric": scope["metric"],
                "arm_a": scope["arm_a"],
                "arm_b": scope["arm_b"],
                "mode_a": scope["mode_a"],
                "mode_b": scope["mode_b"],
                "protocol": other[PROTOCOL],
                VARIANT_FIELD: other[VARIANT_FIELD],
                "n_seeds": len(zoo),
                "seeds": " ".join(str(int(s)) for s in both[PAIR_FIELD]),
                "delta_native": d_nat,
                "ci_native_low": nat_ci[0],
                "ci_native_high": nat_ci[1],
                "delta_aligned": float(d_other_s.mean()) if len(zoo) else np.nan,
                "ci_aligned_low": other_ci[0],
                "ci_aligned_high": other_ci[1],
                "zoo_effect": effect,
                "zoo_ci_low": low,
                "zoo_ci_high": high,
                "zoo_share": effect / d_nat if len(zoo) and d_nat != 0 else np.nan,
                **zoo_verdict(zoo, float(native["margin"])),
            }
            metric = metric_for(scope["metric"])
            row["sentence"] = (
                _sentence(row, metric.unit, metric.scale, metric.label)
                if len(zoo)
                else ("no seed ran under both protocols")
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS))


def attribution_markdown(table: pd.DataFrame) -> str:
    """The report's attribution section ("" when no comparison ran under both protocols)."""
    if table.empty:
        return ""
    lines = [
        "## Attribution: framework or zoo?",
        "",
        "Δ = A − B per protocol (mean over paired seeds, 95% bootstrap CI); the zoo effect Δ_native − Δ_aligned "
        "is bootstrapped over the seeds present in both (docs/protocol.md §11). Its verdict applies the Answer's "
        "rule to the zoo effect against 0: distinguishable from 0 when its 95% t-interval excludes 0, equivalent "
        "to 0 when its 90% t-interval lies inside the metric's ±margin (TOST p < 0.05). attribution.csv has every "
        "number.",
        "",
    ]
    for (scope), rows in table.groupby(_SCOPE, sort=True):
        lines.append(f"**{' × '.join(str(v) for v in (scope if isinstance(scope, tuple) else (scope,)))}**")
        lines.append("")
        lines.extend(f"- {sentence}" for sentence in rows["sentence"])
        lines.append("")
    return "\n".join(lines).rstrip()
