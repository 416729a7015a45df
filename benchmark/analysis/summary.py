"""Which differences between arms are significant, how large they are, in words.

Turns statistical_results into significance_summary.csv (one row per comparison) and
significance_summary.md (the same as tables plus one plain-language sentence per
comparison). Significance is judged on the Wilcoxon signed-rank p, raw and
Holm-adjusted, at α = 0.05. Effect sizes are labelled with Cohen's (1988) thresholds
for d (|d| < 0.2 negligible, < 0.5 small, < 0.8 medium, else large) and Romano et
al.'s (2006) thresholds for Cliff's delta (|δ| < 0.147 negligible, < 0.33 small,
< 0.474 medium, else large). Where the exact test cannot reach α at all (5 pairs:
minimum p = 0.0625, docs/protocol.md §9) every sentence says so, so that "not significant" is
not mistaken for "no difference".
"""

from __future__ import annotations

import math

import pandas as pd

from benchmark.analysis.sanity import verdict
from benchmark.analysis.stats import GROUP, Metric, metric_for
from benchmark.analysis.tables import markdown_table
from benchmark.spec.runkey import GROUP_FIELDS, VARIANT_FIELD

ALPHA = 0.05
COHEN_D_LABELS = ((0.2, "negligible"), (0.5, "small"), (0.8, "medium"), (math.inf, "large"))
CLIFF_LABELS = ((0.147, "negligible"), (0.33, "small"), (0.474, "medium"), (math.inf, "large"))
SUMMARY_COLUMNS = (
    *GROUP,
    "metric",
    "arms",  # "A − B": the comparison, delta = A − B
    "modes",  # A's execution mode vs B's (never pooled)
    "n",
    "delta",
    "ci_low",
    "ci_high",
    "delta_ci",
    "wilcoxon_p",
    "holm_p",
    "significant",
    "significant_holm",
    "cohens_d",
    "d_label",
    "cliffs_delta",
    "cliffs_label",
    "sentence",
)
REFERENCES = (
    "Cohen, J. (1988). *Statistical Power Analysis for the Behavioral Sciences* (2nd ed.). "
    "Hillsdale, NJ: Lawrence Erlbaum.",
    "Romano, J., Kromrey, J. D., Coraggio, J., & Skowronek, J. (2006). Appropriate statistics for ordinal "
    "level data: Should we really be using t-test and Cohen's d for evaluating group differences on the NSSE "
    "and other surveys? Annual meeting of the Florida Association of Institutional Research.",
    "Holm, S. (1979). A simple sequentially rejective multiple test procedure. "
    "*Scandinavian Journal of Statistics*, 6(2), 65–70.",
)


def effect_label(value: float, thresholds, n_pairs: int) -> str:
    """The label of |value| (first threshold it stays below); "n/a" without a test."""
    if n_pairs < 2:
        return "n/a"
    return next(label for bound, label in thresholds if abs(value) < bound)


def fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3g}"


def fmt_value(value: float, metric: Metric) -> str:
    """A delta in display units: percentage points for accuracy-like metrics, images/s, seconds."""
    return f"{value * metric.scale:,.{metric.digits}f}"


def delta_with_ci(row) -> str:
    metric = metric_for(row["metric"])
    if row["n_pairs"] == 0 or math.isnan(row["delta"]):
        return "n/a"
    return (
        f"{fmt_value(row['delta'], metric)} [{fmt_value(row['ci_low'], metric)}, "
        f"{fmt_value(row['ci_high'], metric)}] {metric.unit}"
    )


def _difference_clause(row, metric: Metric) -> str:
    """ "A is 0.80 points higher in test accuracy than B (95% CI …)"."""
    n, a, b = row["n_pairs"], row["arm_a"], row["arm_b"]
    if row["delta"] == 0:
        return f"{a} and {b} have the same mean {metric.label} over {n} pair{'s' if n != 1 else ''}"
    word = metric.more if row["delta"] > 0 else metric.less
    relative = f" ({100 * row['delta'] / row['mean_b']:+.1f}%)" if metric.scale == 1.0 and row["mean_b"] else ""
    ci = (
        f"95% CI {fmt_value(row['ci_low'], metric)} to {fmt_value(row['ci_high'], metric)} {metric.unit}"
        if n >= 2
        else "one pair, no CI"
    )
    return (
        f"{a} is {fmt_value(abs(row['delta']), metric)} {metric.unit}{relative} {word} {metric.phrase} than {b} ({ci})"
    )


def significance_clause(row) -> str:
    n, p, holm_p = row["n_pairs"], row["wilcoxon_p"], row["holm_p"]
    if n < 2:
        return f"too few pairs to test (n = {n})"
    numbers = f"Wilcoxon p = {fmt_p(p)}, Holm-adjusted p = {fmt_p(holm_p)}, n = {n}"
    if holm_p < ALPHA:
        return f"significant ({numbers})"
    if p < ALPHA:
        return f"significant before but not after Holm correction ({numbers})"
    return f"not significant ({numbers})"


def _minimum_p_clause(row) -> str:
    """Said whenever the exact test could not have reached α with this many pairs."""
    min_p = row["wilcoxon_min_p"]
    if row["wilcoxon_method"] == "none" or min_p < ALPHA:  # untested, or α was reachable
        return ""
    n_nonzero = round(1 - math.log2(min_p))
    pairs = f"n = {row['n_pairs']} pairs" + (
        f" ({n_nonzero} non-zero differences)" if n_nonzero != row["n_pairs"] else ""
    )
    return (
        f" With {pairs} the exact two-sided Wilcoxon test cannot reach p < {ALPHA:g} "
        f"(minimum p = {min_p:.4g}); the paired t-test, which assumes normal differences, "
        f"gives p = {fmt_p(row['ttest_p'])}."
    )


def sentence(row) -> str:
    """One plain-language sentence (or three) for one comparison."""
    metric = metric_for(row["metric"])
    if row["n_pairs"] == 0:
        text = f"No completed {row['arm_a']}/{row['arm_b']} pair for {metric.label}: nothing to compare."
    elif math.isnan(row["delta"]):  # censored metric: no pair where both arms reached the target
        text = (
            f"In no pair did both {row['arm_a']} and {row['arm_b']} reach the target, so there is no mean "
            f"difference in {metric.label}; {significance_clause(row)}."
        )
    else:
        text = f"{_difference_clause(row, metric)}; {significance_clause(row)}."
        if row["n_pairs"] >= 2:
            text += (
                f" Effect size d_z = {row['cohens_d']:.2f} ({effect_label(row['cohens_d'], COHEN_D_LABELS, 2)}), "
                f"Cliff's delta = {row['cliffs_delta']:.2f} ({effect_label(row['cliffs_delta'], CLIFF_LABELS, 2)})."
            )
        text += _minimum_p_clause(row)
    if row["note"]:
        text += f" Note: {row['note']}."
    return text


def significance_table(stats: pd.DataFrame) -> pd.DataFrame:
    """significance_summary.csv: one readable row per comparison."""
    if stats.empty:  # fewer than two arms: nothing was compared
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    table = stats[
        [*GROUP, "metric", "delta", "ci_low", "ci_high", "wilcoxon_p", "holm_p", "cohens_d", "cliffs_delta"]
    ].copy()
    table.insert(len(GROUP) + 1, "n", stats["n_pairs"])
    table["delta_ci"] = stats.apply(delta_with_ci, axis=1)
    table["arms"] = stats["arm_a"].astype(str) + " − " + stats["arm_b"].astype(str)
    table["modes"] = stats["mode_a"].fillna("-").astype(str) + " vs " + stats["mode_b"].fillna("-").astype(str)
    tested = stats["n_pairs"] >= 2
    table["significant"] = ((stats["wilcoxon_p"] < ALPHA) & tested).map({True: "yes", False: "no"})
    table["significant_holm"] = ((stats["holm_p"] < ALPHA) & tested).map({True: "yes", False: "no"})
    table["d_label"] = [
        effect_label(d, COHEN_D_LABELS, n) for d, n in zip(stats["cohens_d"], stats["n_pairs"], strict=True)
    ]
    table["cliffs_label"] = [
        effect_label(c, CLIFF_LABELS, n) for c, n in zip(stats["cliffs_delta"], stats["n_pairs"], strict=True)
    ]
    table["sentence"] = stats.apply(sentence, axis=1)
    return table[list(SUMMARY_COLUMNS)]


# ------------------------------------------------------------------ markdown


def _methods(stats: pd.DataFrame, results: pd.DataFrame) -> str:
    completed = int((results["state"] == "completed").sum())
    others = results.loc[results["state"] != "completed", "state"].value_counts()
    excluded = ", ".join(f"{count} {state}" for state, count in others.items()) or "none"
    n_values = sorted(set(stats.loc[stats["n_pairs"] > 0, "n_pairs"]))
    arm_pairs = ", ".join(dict.fromkeys(stats["arm_a"].astype(str) + " − " + stats["arm_b"].astype(str))) or "none"
    return f"""{len(results)} runs, {completed} completed (excluded from the statistics: {excluded}).

**How to read this.** A comparison is two arms (docs/protocol.md §10) within one
{" × ".join(GROUP_FIELDS)} (and one variant: runs launched with extra overrides are
compared only with each other). Comparisons here: {arm_pairs}. Completed runs of the
two arms with the same seed form a pair (pairs per comparison: {", ".join(map(str, n_values)) or "none"}).
Δ = mean(first arm) − mean(second arm), with a 95% percentile bootstrap confidence
interval over the pairs; accuracy and macro-F1 are in percentage points, throughput in
training images per second. The test is the two-sided Wilcoxon signed-rank test on
the paired differences at α = {ALPHA:g}, and Holm's correction is applied to its p
within each metric across the comparisons (Holm 1979). The effect sizes are Cohen's
d for paired samples, d_z = mean(differences) / std(differences), labelled with
Cohen's (1988) thresholds (|d| < 0.2 negligible, < 0.5 small, < 0.8 medium, else
large), and Cliff's delta between the two arms, labelled after Romano et al. (2006)
(|δ| < 0.147 negligible, < 0.33 small, < 0.474 medium, else large). The paired t-test
and all raw numbers are in statistical_results.csv; per-run numbers in results.csv.

**Few seeds.** With n pairs the exact two-sided Wilcoxon test cannot give a p below
2 / 2^n: 0.0625 for 5 pairs, 0.25 for 3. Below 6 pairs "not significant" therefore
says nothing about whether the arms differ; read Δ, its CI and the effect sizes, and
the t-test p in the sentences."""


def _scope(row) -> str:
    """ "cifar10 / resnet50 / fp32", plus the variant where there is one."""
    scope = " / ".join(str(row[field]) for field in GROUP_FIELDS)
    return scope + (f" [{row[VARIANT_FIELD]}]" if row[VARIANT_FIELD] else "")


def _metric_section(metric: Metric, rows: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            **{field: rows[field] for field in GROUP_FIELDS},
            **({VARIANT_FIELD: rows[VARIANT_FIELD]} if rows[VARIANT_FIELD].astype(bool).any() else {}),
            "Δ = A − B": rows["arms"],
            "n": rows["n"],
            "Δ [95% CI]": rows["delta_ci"],
            "Wilcoxon p": rows["wilcoxon_p"].map(fmt_p),
            "Holm p": rows["holm_p"].map(fmt_p),
            "sig.": rows["significant"],
            "sig. (Holm)": rows["significant_holm"],
            "d_z": [f"{d:.2f} ({label})" for d, label in zip(rows["cohens_d"], rows["d_label"], strict=True)],
            "Cliff's δ": [
                f"{c:.2f} ({label})" for c, label in zip(rows["cliffs_delta"], rows["cliffs_label"], strict=True)
            ],
        }
    )
    bullets = "\n".join(f"- **{_scope(r)}, {r['arms']}**: {r['sentence']}" for _, r in rows.iterrows())
    return f"## {metric.label[0].upper()}{metric.label[1:]} ({metric.name})\n\n{markdown_table(shown)}\n\n{bullets}"


def _excluded_section(results: pd.DataFrame) -> str:
    excluded = results.loc[results["state"] != "completed", ["run_dir", "state", "epochs_done"]]
    if excluded.empty:
        return "## Excluded runs\n\nNone: every run completed."
    return "## Excluded runs\n\nListed in results.csv, not used in any statistic.\n\n" + markdown_table(excluded)


def markdown(
    table: pd.DataFrame,
    stats: pd.DataFrame,
    results: pd.DataFrame,
    sanity: pd.DataFrame,
    title: str,
    extra: list[str] | None = None,
) -> str:
    """significance_summary.md: methods, sanity verdict, one section per metric, `extra`
    sections (attribution, divergence: "" where a sweep has none), excluded runs, references."""
    sections = [f"# Significance summary — {title}", _methods(stats, results), f"**{verdict(sanity)}** (sanity.md)."]
    for name in dict.fromkeys(table["metric"]):
        sections.append(_metric_section(metric_for(name), table[table["metric"] == name]))
    sections.extend(section for section in extra or [] if section)
    sections.append(_excluded_section(results))
    sections.append("## References\n\n" + "\n".join(f"- {ref}" for ref in REFERENCES))
    return "\n\n".join(sections) + "\n"
