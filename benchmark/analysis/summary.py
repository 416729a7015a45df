"""Which differences between arms are significant, how large they are, in words.

Turns statistical_results into significance_summary.csv (one row per comparison) and
significance_summary.md (the same as tables plus one plain-language sentence per
comparison). Significance is judged on the Wilcoxon signed-rank p, raw and
Holm-adjusted, at α = 0.05. The markdown opens with the Answer (`answer_section`): per
comparison and metric the verdict against the declared equivalence margin
(benchmark.analysis.verdicts), Δ with its 95% t-interval, and for an inconclusive
verdict how many seed pairs would settle it, with the command that extends the sweep
to that many. Effect sizes are labelled with Cohen's (1988) thresholds
for d (|d| < 0.2 negligible, < 0.5 small, < 0.8 medium, else large) and Romano et
al.'s (2006) thresholds for Cliff's delta (|δ| < 0.147 negligible, < 0.33 small,
< 0.474 medium, else large). Where the exact test cannot reach α at all (5 pairs:
minimum p = 0.0625, docs/protocol.md §9) every sentence says so, so that "not significant" is
not mistaken for "no difference".
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pandas as pd

from benchmark.analysis import verdicts
from benchmark.analysis.runs import read_yaml
from benchmark.analysis.sanity import verdict
from benchmark.analysis.stats import GROUP, Metric, metric_for
from benchmark.analysis.tables import markdown_table
from benchmark.spec.runkey import GROUP_FIELDS, PAIR_FIELD, VARIANT_FIELD

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
    "margin_label",
    "tost_p",
    "verdict",
    "sentence",
)
# An effect label that was not computed: a word, because pandas reads "n/a" (and "None",
# "NA", "nan") back as NaN with its defaults; a Δ that was not is "no pair" (delta_with_ci).
UNTESTED = "untested"
# The extension command asks for at most this many seed pairs: beyond it a sweep costs
# more than most answers are worth, and the planner's estimate is rough anyway.
MAX_EXTEND_PAIRS = 50
BOOTSTRAP_MARK = "†"
REFERENCES = (
    "Cohen, J. (1988). *Statistical Power Analysis for the Behavioral Sciences* (2nd ed.). "
    "Hillsdale, NJ: Lawrence Erlbaum.",
    "Romano, J., Kromrey, J. D., Coraggio, J., & Skowronek, J. (2006). Appropriate statistics for ordinal "
    "level data: Should we really be using t-test and Cohen's d for evaluating group differences on the NSSE "
    "and other surveys? Annual meeting of the Florida Association of Institutional Research.",
    "Holm, S. (1979). A simple sequentially rejective multiple test procedure. "
    "*Scandinavian Journal of Statistics*, 6(2), 65–70.",
    "Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power approach for "
    "assessing the equivalence of average bioavailability. *Journal of Pharmacokinetics and Biopharmaceutics*, "
    "15(6), 657–680.",
    "Berger, R. L., & Hsu, J. C. (1996). Bioequivalence trials, intersection–union tests and equivalence "
    "confidence sets. *Statistical Science*, 11(4), 283–319.",
    "Browne, R. H. (1995). On the use of a pilot sample for sample size determination. "
    "*Statistics in Medicine*, 14(17), 1933–1940.",
)


def effect_label(value: float, thresholds, n_pairs: int) -> str:
    """The label of |value| (first threshold it stays below); UNTESTED without a test."""
    if n_pairs < 2:
        return UNTESTED
    return next(label for bound, label in thresholds if abs(value) < bound)


def fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3g}"


def fmt_value(value: float, metric: Metric) -> str:
    """A delta in display units: percentage points for accuracy-like metrics, images/s, seconds."""
    return f"{value * metric.scale:,.{metric.digits}f}"


def delta_with_ci(row) -> str:
    metric = metric_for(row["metric"])
    if row["n_pairs"] == 0:
        return "no pair"
    if math.isnan(row["delta"]):
        return "no pair reached by both"
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


def _minimum_p_clause(row, ttest: bool = True) -> str:
    """Said whenever the exact test could not have reached α with this many pairs
    (`ttest`: add the paired t-test's p, where it was computed on some pairs)."""
    min_p = row["wilcoxon_min_p"]
    if min_p < ALPHA or (ttest and row["wilcoxon_method"] == "none"):  # α was reachable, or untested
        return ""
    # 2 / 2^k; 1.0 (the cap) stands for k = 0 or 1, so then no count is given
    n_nonzero = round(1 - math.log2(min_p)) if min_p < 1 else None
    pairs = f"n = {row['n_pairs']} pairs" + (
        f" ({n_nonzero} non-zero differences)" if n_nonzero not in (None, row["n_pairs"]) else ""
    )
    text = f" With {pairs} the exact two-sided Wilcoxon test cannot reach p < {ALPHA:g} (minimum p = {min_p:.4g})"
    if not ttest:
        return text + "."
    return text + f"; the paired t-test, which assumes normal differences, gives p = {fmt_p(row['ttest_p'])}."


def sentence(row) -> str:
    """One plain-language sentence (or three) for one comparison."""
    metric = metric_for(row["metric"])
    if row["n_pairs"] == 0:
        text = f"No completed {row['arm_a']}/{row['arm_b']} pair for {metric.label}: nothing to compare."
    elif math.isnan(row["delta"]):  # censored metric: no pair where both arms reached the target
        text = (
            f"In no pair did both {row['arm_a']} and {row['arm_b']} reach the target, so there is no mean "
            f"difference in {metric.label}; {significance_clause(row)}."
        ) + _minimum_p_clause(row, ttest=False)
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
    table["margin_label"] = stats["margin_label"]
    table["tost_p"] = stats["tost_p"]
    table["verdict"] = stats["verdict"]
    table["sentence"] = stats.apply(sentence, axis=1)
    return table[list(SUMMARY_COLUMNS)]


# ------------------------------------------------------------------ the answer: verdicts and seeds needed


def _signed(value: float, metric: Metric) -> str:
    return f"{value * metric.scale:+,.{metric.digits}f}".replace("-", "−")


def _delta_t95(row, metric: Metric) -> str:
    """Δ [95% t-interval] in display units (the interval the difference test uses)."""
    if row["n_pairs"] == 0 or math.isnan(row["delta"]):
        return delta_with_ci(row)
    if math.isnan(row["t95_low"]):
        return f"{_signed(row['delta'], metric)} {metric.unit} (one pair, no CI)"
    return (
        f"{_signed(row['delta'], metric)} [{_signed(row['t95_low'], metric)}, "
        f"{_signed(row['t95_high'], metric)}] {metric.unit}"
    )


def _margin_size(row, metric: Metric) -> str:
    """The absolute margin in display units ("0.50 points", "61 images/s"), "" where unknown."""
    if not math.isfinite(row["margin"]):
        return ""
    return f"{fmt_value(row['margin'], metric)} {metric.unit}"


def _margin_text(row, metric: Metric) -> str:
    """The declared margin, with its absolute size where it is relative to the second arm."""
    label, size = str(row["margin_label"]), _margin_size(row, metric)
    if not size or label.endswith("points"):
        return label or "none"
    return f"{label} = ±{size}"


def _pairs_text(needed: float) -> str:
    return "more than 10,000 pairs" if math.isinf(needed) else f"about {int(needed)} pairs"


def seeds_needed(row) -> str:
    """For an inconclusive verdict: how many seed pairs in all would settle it (the planner's
    seeds_for_equivalence and seeds_for_difference), or why it cannot be planned."""
    metric = metric_for(row["metric"])
    if row["n_reached"] < 2:
        reached = " with a value in both arms" if metric.censored else ""
        return f"under 2 pairs{reached}: nothing to plan from"
    size = _margin_size(row, metric)
    if not size:
        return "no margin (the second arm's mean is not finite): nothing to plan"
    equivalence, difference = row["seeds_for_equivalence"], row["seeds_for_difference"]
    if math.isnan(equivalence):
        first = "equivalence cannot be shown while a pair is reached by one arm only"
    else:
        first = f"{_pairs_text(equivalence)} would show equivalence within ±{size}"
    if math.isnan(difference):
        return first
    second = (
        f"{_pairs_text(difference)} would detect a difference of {size}"
        if math.isnan(equivalence)
        else f"{_pairs_text(difference).replace(' pairs', '')} would detect a difference of {size}"
    )
    return f"{first}; {second}"


def _bootstrap_disagrees(row) -> bool:
    return bool(row["boot_equivalent"]) != bool(row["tost_p"] < verdicts.ALPHA)


def _comparison_labels(stats: pd.DataFrame) -> pd.Series:
    """ "A − B", plus "[mode of A vs mode of B]" where one arm pair in one group was
    compared in several execution-mode combinations."""
    arms = stats["arm_a"].astype(str) + " − " + stats["arm_b"].astype(str)
    modes = (
        stats["mode_a"].astype(object).fillna("?").astype(str)
        + " vs "
        + stats["mode_b"].astype(object).fillna("?").astype(str)
    )
    scope = stats.apply(_scope, axis=1) + arms
    several = modes.groupby(scope).transform("nunique") > 1
    return arms.where(~several, arms + " [" + modes + "]")


def answer_table(stats: pd.DataFrame) -> pd.DataFrame:
    """The Answer's rows, in report order (group, arm pair, modes, metric)."""
    # read back from a CSV, a column without any value is float: object first, for the fill
    rows = stats.assign(**{VARIANT_FIELD: stats[VARIANT_FIELD].astype(object).fillna("").astype(str)})
    return pd.DataFrame(
        {
            "comparison": rows.apply(_scope, axis=1),
            "Δ = A − B": _comparison_labels(rows),
            "metric": [metric_for(m).label for m in rows["metric"]],
            "n": rows["n_pairs"].astype(int),
            "verdict": [
                f"**{r['verdict']}**" + (f" {BOOTSTRAP_MARK}" if _bootstrap_disagrees(r) else "")
                for _, r in rows.iterrows()
            ],
            "Δ [95% t-interval]": [_delta_t95(r, metric_for(r["metric"])) for _, r in rows.iterrows()],
            "margin": [_margin_text(r, metric_for(r["metric"])) for _, r in rows.iterrows()],
            "seeds needed": [
                seeds_needed(r) if r["verdict"] == verdicts.INCONCLUSIVE else "" for _, r in rows.iterrows()
            ],
        }
    )


def _pairs_needed(row) -> float:
    """The pairs an inconclusive row needs for either answer (the larger plannable count)."""
    counts = [c for c in (row["seeds_for_equivalence"], row["seeds_for_difference"]) if not math.isnan(c)]
    return max(counts) if counts else math.nan


def _sweep_seeds(multirun: dict | None, results: pd.DataFrame) -> list[int]:
    """The sweep's seeds: its seed list as launched (the command line's, else its preset's),
    then any other seed its runs used."""
    declared: list[int] = []
    if multirun:
        hydra = multirun.get("hydra") or {}
        task = [str(o) for o in (hydra.get("overrides") or {}).get("task") or []]
        given = [o.partition("=")[2] for o in task if o.partition("=")[0].lstrip("+~") == PAIR_FIELD]
        preset = ((hydra.get("sweeper") or {}).get("params") or {}).get(PAIR_FIELD)
        text = given[-1] if given else str(preset) if preset is not None else ""
        try:
            declared = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:  # range(...), choice(...): the runs' seeds below say what ran
            declared = []
    ran = sorted(int(s) for s in pd.to_numeric(results.get(PAIR_FIELD), errors="coerce").dropna().unique())
    return list(dict.fromkeys([*declared, *ran]))


def _read_multirun(sweep_dir: Path) -> dict | None:
    loaded = read_yaml(sweep_dir / "multirun.yaml")
    return loaded if isinstance(loaded, dict) else None


def extend_command(sweep_dir: Path, seeds: list[str], multirun: dict | None) -> str:
    """`python -m benchmark --multirun` with the launch's own overrides and the longer
    seed list, into the same sweep directory (its completed runs are skipped)."""
    seed_list = f"{PAIR_FIELD}={','.join(seeds)}"
    target = f"hydra.sweep.dir={shlex.quote(str(sweep_dir))}"
    if multirun is None:
        return f"python -m benchmark --multirun <the sweep's other overrides> {seed_list} {target}"
    overrides = (multirun.get("hydra") or {}).get("overrides") or {}
    # the launch's own choices of Hydra (hydra/launcher=slurm_a40, hydra.launcher.*), so the
    # extension runs where the sweep ran; the mode and the directory are set here
    given = [str(o) for o in [*(overrides.get("hydra") or []), *(overrides.get("task") or [])]]
    dropped = (PAIR_FIELD, "hydra.sweep.dir", "hydra.mode", "hydra.run.dir")
    kept = [o for o in given if o.partition("=")[0].lstrip("+~") not in dropped]
    return " ".join(["python -m benchmark --multirun", *map(shlex.quote, kept), seed_list, target])


def more_seeds(stats: pd.DataFrame, results: pd.DataFrame, sweep_dir: Path | None) -> str:
    """The paragraph (and command) that extends the sweep for its inconclusive verdicts."""
    open_rows = stats[stats["verdict"] == verdicts.INCONCLUSIVE]
    if open_rows.empty:
        return "**More seeds.** No verdict is inconclusive: these seeds answer every comparison."
    needs = [n for n in (_pairs_needed(r) for _, r in open_rows.iterrows()) if not math.isnan(n)]
    if not needs:
        return (
            "**More seeds.** No inconclusive verdict can be planned (under 2 pairs, or a pair reached by one arm "
            "only): complete at least 2 seed pairs of each comparison first."
        )
    multirun = _read_multirun(sweep_dir) if sweep_dir is not None else None
    seeds = _sweep_seeds(multirun, results)
    largest = max(needs)
    target = int(min(largest, MAX_EXTEND_PAIRS))
    capped = (
        f" (capped at {MAX_EXTEND_PAIRS}; the planner asks for {_pairs_text(largest).replace('about ', '')})"
        if largest > MAX_EXTEND_PAIRS
        else ""
    )
    if target <= len(seeds):
        return (
            f"**More seeds.** The inconclusive verdicts need at most {target} pairs by the planner, and the sweep "
            f"has {len(seeds)} seeds: what keeps them open is their Δ, near the margin, or missing runs "
            "(sweep_status.csv), not the number of seeds."
        )
    # New seeds: the smallest positive integers the sweep has not used. Readable, distinct
    # from its seeds whatever they are, and the same on every rebuild of this report, so a
    # second extension continues the list instead of choosing other ones.
    new: list[int] = []
    candidate = 1
    while len(seeds) + len(new) < target:
        if candidate not in seeds:
            new.append(candidate)
        candidate += 1
    command = extend_command(sweep_dir or Path("SWEEP_DIR"), [str(s) for s in [*seeds, *new]], multirun)
    source = (
        "the launch's overrides from multirun.yaml"
        if multirun is not None
        else "no multirun.yaml here: put the sweep's own overrides in place of the placeholder"
    )
    return (
        f"**More seeds.** The inconclusive verdicts need up to {target} seed pairs{capped}; the sweep has "
        f"{len(seeds)} seeds. To add {len(new)}, launch the same sweep again with the longer seed list "
        f"({source}; completed runs are skipped, and the report is rebuilt at the end):\n\n"
        f"```bash\n{command}\n```"
    )


def _margins_in_force(stats: pd.DataFrame, margins: dict[str, verdicts.Margin] | None) -> str:
    if margins is None:  # not given: what the statistics record, without where it came from
        labels = stats.drop_duplicates("metric").set_index("metric")["margin_label"]
        shown = [f"{metric} {label}" for metric, label in labels.items()]
    else:
        shown = [f"{key} {m.label()} ({m.source})" for key, m in margins.items()]
    return (
        "**Margins in force** (declared before the results: a sweep's `analysis.margins`, or "
        "`python -m benchmark.analyze SWEEP --margin METRIC=VALUE`): " + "; ".join(shown) + ". Time-to-accuracy "
        "margins hold for every target."
    )


RULE = f"""**The rule.** A difference is shown when the paired t-test's p, Holm-adjusted within
the metric across the comparisons, is below α = {verdicts.ALPHA:g} (with a single comparison:
when the 95% t-interval in the table excludes 0). Equivalence is shown when the TOST's p (two
one-sided paired t-tests against ±margin; Schuirmann 1987) is below {verdicts.ALPHA:g}, that is
when the 90% t-interval lies inside ±margin. Both shown: *{verdicts.NEGLIGIBLE}*; the
difference only: *{verdicts.DIFFERENT}*; equivalence only: *{verdicts.EQUIVALENT}*; neither:
*{verdicts.INCONCLUSIVE}*, the seeds cannot tell yet. Holm's correction stays on the
difference tests; each TOST is a claim about its own comparison at α = {verdicts.ALPHA:g}, not
adjusted. A claim that all comparisons are equivalent needs no adjustment, since it
holds only if every TOST passes (an intersection–union test, Berger & Hsu 1996), but
picking the equivalent ones out of many comparisons is not protected against chance.
{BOOTSTRAP_MARK} marks a row where the distribution-free check, the 90% paired-bootstrap CI inside
±margin, disagrees with the TOST. Seeds needed are pairs in all, for 80% power at
α = {verdicts.ALPHA:g}: of the TOST if the true Δ were 0, and of the t-test against a true
difference of one margin; both at the 80% one-sided upper confidence bound of the
standard deviation of the paired differences, not at the estimate, which with 3 to 5
pairs is too often small by chance (Browne 1995)."""


def answer_section(
    stats: pd.DataFrame,
    results: pd.DataFrame,
    sweep_dir: Path | None = None,
    margins: dict[str, verdicts.Margin] | None = None,
    short: bool = False,
) -> str:
    """The Answer that opens significance_summary.md: the verdict table, the rule, the
    margins in force and the command for more seeds (`short`: the table and the command)."""
    if stats.empty:
        return "## Answer\n\nNothing was compared: the sweep has fewer than two arms."
    parts = ["## Answer", markdown_table(answer_table(stats))]
    if not short:
        parts += [RULE, _margins_in_force(stats, margins)]
    elif (stats.apply(_bootstrap_disagrees, axis=1)).any():
        parts.append(f"{BOOTSTRAP_MARK} the 90% bootstrap CI disagrees with the TOST.")
    parts.append(more_seeds(stats, results, sweep_dir))
    return "\n\n".join(parts)


def answer_text(report_dir: str | Path) -> str:
    """The short Answer (verdicts and the command for more seeds) of a written report, from
    its CSV files: what the end of a sweep prints."""
    report_dir = Path(report_dir)
    stats = pd.read_csv(report_dir / "statistical_results.csv", keep_default_na=False, na_values=[""])
    results = pd.read_csv(report_dir / "results.csv")
    return answer_section(stats, results, report_dir.parent, short=True) + (
        f"\n\nThe rule, the margins and every number: {report_dir / 'significance_summary.md'}"
    )


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
    sweep_dir: Path | None = None,
    margins: dict[str, verdicts.Margin] | None = None,
) -> str:
    """significance_summary.md: the Answer (answer_section; `sweep_dir` for the command that
    extends the sweep, `margins` the margins in force), methods, sanity verdict, one section
    per metric, `extra` sections (attribution, divergence: "" where a sweep has none),
    excluded runs, references."""
    sections = [
        f"# Significance summary — {title}",
        answer_section(stats, results, sweep_dir, margins),
        _methods(stats, results),
        f"**{verdict(sanity)}** (sanity.md).",
    ]
    for name in dict.fromkeys(table["metric"]):
        sections.append(_metric_section(metric_for(name), table[table["metric"] == name]))
    sections.extend(section for section in extra or [] if section)
    sections.append(_excluded_section(results))
    sections.append("## References\n\n" + "\n".join(f"- {ref}" for ref in REFERENCES))
    return "\n\n".join(sections) + "\n"
