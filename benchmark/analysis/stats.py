"""Two arms paired by seed: the statistics of statistical_results.csv.

A comparison is a pair of arms (A, B) (docs/protocol.md §10; benchmark.spec.runkey: the
arm fields, plus the execution mode each run recorded) within one value of the other
key fields (dataset, model, precision and the run's variant). For every comparison and
every compared metric, the completed runs of A and B with the same seed form a pair
and d = A − B is its difference (seeds fix the data split, the initialisation draw
and the augmentation stream, so pairing removes that shared variance). By default
every two arms present are compared, the one later in alphabetical order first
(B − A for arms A < B); `--compare A:B` (analyze) chooses the pairs. Per comparison:

- delta = mean(A) − mean(B) = mean(d), with a 95% percentile bootstrap CI
  (10,000 resamples of the pairs, fixed RNG seed, so the report is reproducible);
- wilcoxon_p: two-sided Wilcoxon signed-rank test of d (zero differences dropped, as
  in Wilcoxon's and scipy's convention), always exact: tied |d| get midranks and the
  null distribution of the signed-rank sum is counted exactly (signed_rank_null),
  at any n; wilcoxon_min_p = 2 / 2^n is the smallest p the exact test can
  reach with n non-zero differences (0.0625 for n = 5: docs/protocol.md §9);
- ttest_p: paired t-test (scipy.stats.ttest_rel);
- holm_p / holm_ttest_p: Holm step-down adjustment of wilcoxon_p / ttest_p within one
  metric, across the comparisons that could be tested (n_pairs ≥ 2);
- cohens_d: Cohen's d for paired samples, d_z = mean(d) / std(d, ddof=1);
- cliffs_delta: P(A > B) − P(A < B) over all cross pairs of the two arms' values,
  in [−1, 1];
- mean/std (ddof=1) of each arm over the paired seeds only;
- t95_low/t95_high: the 95% paired t-interval of delta (the difference test's interval);
- the equivalence test against the declared margin and the verdict
  (benchmark.analysis.verdicts: margin, tost_p, t90_low/t90_high, boot90_low/boot90_high,
  boot_equivalent, verdict) and the seeds planner (sd_ucb, seeds_for_equivalence,
  seeds_for_difference).

Degenerate cases (no pair, one pair, all differences zero or equal, unpaired seeds,
duplicate runs, censored times, differences within REL_TOL) get documented values and
a `note`, never inf, never a crash: see docs/analysis.md §7, the one table of these
conventions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.analysis import verdicts
from benchmark.analysis.time_to_accuracy import censored_counts, ordered, parse
from benchmark.spec.runkey import COMPARISON_FIELDS, MODE_FIELD, PAIR_FIELD, REQUIRED_KEY, arm_name

# runs are compared within one value of these (dataset, model, precision, variant)
GROUP = COMPARISON_FIELDS
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20240101
CONFIDENCE = 0.95
D_Z_CAP = 1e6
REL_TOL = 1e-9


@dataclass(frozen=True)
class Metric:
    """A compared metric and how to speak about it (summary sentences, plot labels)."""

    name: str
    label: str
    unit: str
    scale: float  # display value = scale × stored value
    more: str  # the word for a positive delta ...
    less: str
    phrase: str  # ... and what it qualifies: "A is 0.8 points higher in test accuracy than B"
    digits: int = 2  # decimals of a displayed delta
    # inf is a censored value ("never reached": benchmark.analysis.time_to_accuracy), not a missing one
    censored: bool = False


COMPARED_METRICS = {
    m.name: m
    for m in (
        Metric("test_accuracy", "test accuracy", "points", 100.0, "higher", "lower", "in test accuracy"),
        Metric("test_macro_f1", "test macro-F1", "points", 100.0, "higher", "lower", "in test macro-F1"),
        Metric("images_per_sec_avg", "training throughput", "images/s", 1.0, "faster", "slower", "in training", 0),
    )
}


def metric_for(name: str) -> Metric:
    """The Metric of a compared column: COMPARED_METRICS, or a time-to-accuracy column."""
    if name in COMPARED_METRICS:
        return COMPARED_METRICS[name]
    parsed = parse(name)
    if parsed is None:
        raise ValueError(f"{name!r} is neither a compared metric nor a time-to-accuracy column")
    kind, target = parsed
    reach = f"to reach {100 * target:g}% val accuracy"
    if kind == "seconds":
        return Metric(name, f"training time {reach}", "s", 1.0, "slower", "faster", reach, 1, censored=True)
    return Metric(name, f"epochs {reach}", "epochs", 1.0, "later", "sooner", reach, 2, censored=True)


def compared_metrics(results: pd.DataFrame) -> list[str]:
    """COMPARED_METRICS, then the time-to-accuracy columns of the sweep's targets."""
    return [*COMPARED_METRICS, *ordered(results.columns)]


STAT_COLUMNS = (
    *GROUP,
    "metric",
    "arm_a",  # delta = arm_a − arm_b
    "arm_b",
    "mode_a",  # the execution mode of each arm's runs (never pooled)
    "mode_b",
    "n_pairs",
    "n_reached",  # pairs behind delta, its CIs, the t-test, d_z and the TOST (time to accuracy: both reached it)
    "seeds",
    "mean_a",
    "std_a",
    "mean_b",
    "std_b",
    "delta",
    "ci_low",
    "ci_high",
    "wilcoxon_p",
    "wilcoxon_method",
    "wilcoxon_min_p",
    "ttest_p",
    "holm_p",
    "holm_ttest_p",
    "cohens_d",
    "cliffs_delta",
    "t95_low",
    "t95_high",
    "margin",  # in the metric's stored unit (margin_label: as declared)
    "margin_label",
    "tost_p",
    "t90_low",
    "t90_high",
    "boot90_low",
    "boot90_high",
    "boot_equivalent",
    "verdict",
    "sd_ucb",
    "seeds_for_equivalence",
    "seeds_for_difference",
    "note",
)


# ------------------------------------------------------------------ single statistics


def bootstrap_ci(
    diffs: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float | tuple[float, ...] = CONFIDENCE,
):
    """Percentile bootstrap CI of mean(diffs), resampling whole pairs with a fixed seed;
    one (low, high) per confidence level when given several (one set of resamples)."""
    levels = confidence if isinstance(confidence, tuple) else (confidence,)
    if len(diffs) == 0:
        cis = [(np.nan, np.nan) for _ in levels]
    else:
        rng = np.random.default_rng(seed)
        means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
        tails = [100 * (1 - level) / 2 for level in levels]
        ends = np.percentile(means, [q for tail in tails for q in (tail, 100 - tail)])
        cis = [(float(ends[2 * i]), float(ends[2 * i + 1])) for i in range(len(levels))]
    return cis if isinstance(confidence, tuple) else cis[0]


def signed_rank_null(ranks: np.ndarray) -> np.ndarray:
    """P(T+ = k / 2) for k = 0 .. 2·sum(ranks) under H0 (each sign ± with probability ½).

    T+ is the sum of the ranks of the positive differences. Midranks of tied |d| are
    multiples of ½, so the doubled ranks are integers and the distribution is the
    product of the generating functions (1 + x^(2r)) / 2: a dynamic programme over
    the possible sums, O(n · n²) additions, exact at any n and with any ties (50 pairs:
    2,551 sums, well under a millisecond), where enumerating the 2^n sign patterns is not."""
    doubled = np.rint(2 * np.asarray(ranks, dtype=float)).astype(np.int64)
    dist = np.zeros(int(doubled.sum()) + 1)
    dist[0] = 1.0
    for r in doubled:
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[: len(dist) - r]
        dist = 0.5 * (dist + shifted)
    return dist


def wilcoxon_test(diffs: np.ndarray) -> tuple[float, str]:
    """(two-sided p, method) of the Wilcoxon signed-rank test on differences already
    snapped by `_snap` (exact zeros and exact ties): zeros dropped, |d| ranked with
    midranks for ties, p = 2·P(T+ ≤ min(T+, T−)) from the exact null distribution
    (signed_rank_null), capped at 1. Without ties this is scipy's exact test; with
    ties it equals enumerating every sign pattern."""
    nonzero = diffs[diffs != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0, "none"
    ranks = stats.rankdata(np.abs(nonzero))
    dist = signed_rank_null(ranks)
    doubled_plus = int(np.rint(2 * ranks[nonzero > 0].sum()))
    low = min(doubled_plus, len(dist) - 1 - doubled_plus)
    tied = len(np.unique(np.abs(nonzero))) < n
    return float(min(1.0, 2.0 * dist[: low + 1].sum())), "exact (ties: midranks)" if tied else "exact"


def wilcoxon_min_p(n_nonzero: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give with n differences:
    all of them on one side, 2 of the 2^n equally likely sign patterns."""
    return min(1.0, 2.0 / 2.0**n_nonzero)


def cohens_dz(diffs: np.ndarray) -> float:
    """Cohen's d for paired samples (d_z): mean / std (ddof=1) of the differences,
    capped at ±D_Z_CAP (reached when the differences have no spread)."""
    spread = np.std(diffs, ddof=1)
    mean = np.mean(diffs)
    if spread == 0:
        return float(np.copysign(D_Z_CAP, mean)) if mean != 0 else 0.0
    return float(np.clip(mean / spread, -D_Z_CAP, D_Z_CAP))


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """Cliff's delta of x over y: (#(x_i > y_j) − #(x_i < y_j)) / (n_x n_y)."""
    if len(x) == 0 or len(y) == 0:
        return 0.0
    return float(np.sign(x[:, None] - y[None, :]).mean())


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def _snap(diffs: np.ndarray, scale: float) -> np.ndarray:
    """Float noise made exact (docs/analysis.md §7): a difference within tol = REL_TOL ×
    scale of zero becomes 0, and non-zero magnitudes within tol of the next one in sorted
    order tie (a chain of them as a whole, at the smallest), keeping their signs."""
    tol = REL_TOL * scale if scale > 0 else REL_TOL
    out = np.where(np.abs(diffs) <= tol, 0.0, np.asarray(diffs, dtype=float))
    nonzero = np.flatnonzero(out)
    if len(nonzero) < 2:
        return out
    magnitudes = np.abs(out[nonzero])
    order = np.argsort(magnitudes, kind="stable")
    tied = magnitudes[order]
    for i in range(1, len(tied)):
        if tied[i] - magnitudes[order[i - 1]] <= tol:
            tied[i] = tied[i - 1]
    out[nonzero[order]] = np.sign(out[nonzero[order]]) * tied
    return out


# ------------------------------------------------------------------ one comparison


def equivalence_statistics(diffs: np.ndarray, snapped: np.ndarray, margin: float, boot90: tuple) -> dict:
    """The t-intervals, the TOST and its bootstrap check (`boot90`: the 90% bootstrap CI),
    and the planner, of one comparison's differences (`snapped`: the same with float
    noise made exact)."""
    n = len(diffs)
    spread = n >= 2 and np.ptp(snapped) > 0
    (boot_low, boot_high), t90, t95 = boot90, (np.nan, np.nan), (np.nan, np.nan)
    if spread:
        t90, t95 = verdicts.t_interval(diffs, 0.90), verdicts.t_interval(diffs, CONFIDENCE)
    elif n >= 2:  # no spread: every interval is the point (the limit of the t-intervals)
        mean = float(np.mean(snapped))
        t90 = t95 = (mean, mean)
    return {
        "t95_low": t95[0],
        "t95_high": t95[1],
        "margin": margin,
        "tost_p": verdicts.tost(diffs, margin, spread=bool(spread)),
        "t90_low": t90[0],
        "t90_high": t90[1],
        "boot90_low": boot_low,
        "boot90_high": boot_high,
        # one pair resamples to itself: its "interval" shows nothing
        "boot_equivalent": n >= 2 and verdicts.inside(boot_low, boot_high, margin),
        **verdicts.plan(diffs, margin, spread=bool(spread)),
    }


def paired_statistics(a: np.ndarray, b: np.ndarray, margin: verdicts.Margin | None = None) -> dict:
    """All statistics of one comparison from the paired values (same seed order), delta = a − b.
    `margin`: the equivalence margin declared for the metric (None: no equivalence test)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = a - b
    n = len(diffs)
    scale = float(np.max(np.abs(np.concatenate([a, b])))) if n else 0.0
    snapped = _snap(diffs, scale)
    mean_b = float(b.mean()) if n else np.nan
    absolute = margin.absolute(mean_b) if margin is not None else np.nan
    ci95, ci90 = bootstrap_ci(diffs, confidence=(CONFIDENCE, 0.90))  # one set of resamples for both
    row = {
        "n_pairs": n,
        "n_reached": n,
        "margin_label": margin.label() if margin is not None else "",
        **equivalence_statistics(diffs, snapped, absolute, ci90),
        "mean_a": a.mean() if n else np.nan,
        "std_a": a.std(ddof=1) if n > 1 else np.nan,
        "mean_b": b.mean() if n else np.nan,
        "std_b": b.std(ddof=1) if n > 1 else np.nan,
        "delta": diffs.mean() if n else np.nan,
        "wilcoxon_min_p": wilcoxon_min_p(int(np.count_nonzero(snapped))),
        "cliffs_delta": cliffs_delta(a, b),
    }
    row["ci_low"], row["ci_high"] = ci95
    untestable = {"wilcoxon_p": 1.0, "wilcoxon_method": "none", "ttest_p": 1.0, "cohens_d": 0.0}
    if n == 0:
        return {**row, **untestable, "note": "no completed pair of the two arms: nothing to compare"}
    if n == 1:
        return {
            **row,
            **untestable,
            "note": "one pair: no test possible; p = 1.0, d = 0.0 and tost_p = 1.0 by convention",
        }
    if not snapped.any():
        return {
            **row,
            **untestable,
            "delta": 0.0,
            "ci_low": 0.0,
            "ci_high": 0.0,
            "note": "all differences are zero: p = 1.0 and d = 0.0; tost_p = 0.0 (its limit)",
        }
    row["wilcoxon_p"], row["wilcoxon_method"] = wilcoxon_test(snapped)
    if np.ptp(snapped) == 0:  # t and d_z grow without bound as the spread goes to zero
        return {
            **row,
            "ttest_p": 0.0,
            "cohens_d": cohens_dz(snapped),
            "note": f"all differences are equal (zero variance): t-test p = 0.0 (its limit) "
            f"and d_z = ±{D_Z_CAP:g} (the cap) by convention; tost_p = {row['tost_p']:g} (its limit)",
        }
    return {**row, "ttest_p": float(stats.ttest_rel(a, b).pvalue), "cohens_d": cohens_dz(diffs), "note": ""}


def censored_statistics(a: np.ndarray, b: np.ndarray, margin: verdicts.Margin | None = None) -> dict:
    """paired_statistics where inf means "never reached" (time to accuracy; the
    convention is in benchmark.analysis.time_to_accuracy): delta, CI, t-test and d_z
    over the pairs where both arms reached the target (`n_reached`); the Wilcoxon test and Cliff's
    delta over every pair, a pair reached by one arm only ranking above every other. A
    pair reached by one arm only is a difference outside any finite margin: with one,
    equivalence cannot be shown (tost_p = 1.0, no bootstrap check, no plan for it)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    row = paired_statistics(a[both], b[both], margin)
    only_b, only_a, neither = censored_counts(a, b)  # only_b: B reached it, A never did (A slower)
    if only_a + only_b + neither == 0:
        return row
    if only_a + only_b:
        row.update(tost_p=1.0, boot_equivalent=False, seeds_for_equivalence=np.nan)
    scale = float(np.max(np.abs(np.concatenate([a[both], b[both]])))) if both.any() else 1.0
    snapped = _snap(a[both] - b[both], scale)
    top = 2.0 * float(np.max(np.abs(snapped), initial=0.0)) + 1.0  # above every finite |difference|
    ranked = np.concatenate([snapped, np.full(only_b, top), np.full(only_a, -top), np.zeros(neither)])
    n = len(a)
    row["n_pairs"] = n
    row["wilcoxon_min_p"] = wilcoxon_min_p(int(np.count_nonzero(ranked)))
    row["wilcoxon_p"], row["wilcoxon_method"] = wilcoxon_test(ranked) if n >= 2 else (1.0, "none")
    with np.errstate(invalid="ignore"):
        signs = np.nan_to_num(np.sign(a[:, None] - b[None, :]))  # inf − inf: a tie
    row["cliffs_delta"] = float(signs.mean())
    counts = [
        f"{k} pair{'s' if k != 1 else ''} {what}"
        for k, what in (
            (only_b, "where only the second arm reached the target"),
            (only_a, "where only the first arm reached it"),
            (neither, "where neither did"),
        )
        if k
    ]
    reached = int(both.sum())
    row["note"] = "; ".join(
        filter(
            None,
            [
                f"of {n} pairs, {', '.join(counts)}: they enter the Wilcoxon test and Cliff's delta (one arm reaching "
                f"it ranks above every other difference, neither is a tie); delta, CIs, t-test, d_z and TOST use the "
                f"{reached} where both reached it (n_reached)",
                "a pair reached by one arm only lies outside any margin: equivalence not shown (tost_p = 1.0)"
                if only_a + only_b
                else "",
                # the convention that set p and d for those pairs (none, one, no spread)
                row["note"]
                if reached
                else "no pair where both reached it: delta and its CIs NaN, t-test p = 1.0, d_z = 0.0 by convention",
            ],
        )
    )
    return row


# ------------------------------------------------------------------ arms


@dataclass(frozen=True)
class ArmPair:
    """One comparison: Δ = first − second (arm names as in the results' "arm" column)."""

    first: str
    second: str

    @classmethod
    def parse(cls, text: str) -> ArmPair:
        """ "A:B" from the command line or a config."""
        first, sep, second = text.partition(":")
        if not sep or not first or not second or first == second:
            raise ValueError(f"--compare {text!r}: write two different arms as A:B (arm names as in results.csv)")
        return cls(first.strip(), second.strip())

    def __str__(self) -> str:
        return f"{self.first} − {self.second}"


def arm_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's arm (benchmark.spec.runkey.arm_name)."""
    if runs.empty:
        return pd.Series([], index=runs.index, dtype=object)
    return runs.apply(arm_name, axis=1).astype(object)


def with_arm(results: pd.DataFrame) -> pd.DataFrame:
    """`results` plus its "arm" column, the variant filled ("" where unknown) and the
    mode of a run without summary.json (mode unknown) set to its arm's only mode."""
    runs = results.assign(arm=arm_names(results), variant=results["variant"].fillna("").astype(str))
    for _, mine in runs.groupby(list(GROUP) + ["arm"]).groups.items():
        modes = set(runs.loc[mine, MODE_FIELD].dropna()) - {"unknown"}
        if len(modes) == 1:
            runs.loc[mine, MODE_FIELD] = modes.pop()
    return runs


def default_pairs(arms) -> list[ArmPair]:
    """Every two arms present, the later name in alphabetical order first."""
    names = sorted(set(arms))
    return [ArmPair(later, earlier) for i, earlier in enumerate(names) for later in names[i + 1 :]]


# ------------------------------------------------------------------ the whole sweep


def one_run_per_seed(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Completed runs, one per (arm, execution mode, seed). Of duplicates, the
    shallowest run directory wins, then the newest (the latest modification time of
    its files, `modified_at`), then the one whose path sorts last. `runs` carries the
    "arm" column (with_arm)."""
    unit = ["arm", MODE_FIELD, PAIR_FIELD]
    completed = runs[runs["state"] == "completed"]
    depth = completed["run_dir"].str.count("/")
    modified = (
        pd.to_datetime(completed["modified_at"], errors="coerce", utc=True)
        if "modified_at" in completed
        else pd.Series(pd.NaT, index=completed.index)
    )
    completed = completed.assign(_depth=depth, _modified=modified).sort_values(
        ["_depth", "_modified", "run_dir"], ascending=[True, False, False], na_position="last"
    )
    chosen = completed.drop_duplicates(unit, keep="first").drop(columns=["_depth", "_modified"])
    counts = completed.groupby(unit).size()
    notes = [
        f"{counts[arm, mode, seed]} completed {arm} runs for {PAIR_FIELD} {seed}: used {run_dir}"
        for arm, mode, seed, run_dir in chosen[[*unit, "run_dir"]].itertuples(index=False)
        if counts[arm, mode, seed] > 1
    ]
    return chosen, notes


def _unpaired_reason(runs: pd.DataFrame, arm: str, seed: int) -> str:
    """Why `arm` has no usable value for `seed`: its state, or that no run exists."""
    states = runs.loc[(runs["arm"] == arm) & (runs[PAIR_FIELD] == seed), "state"]
    if states.empty:
        return f"no {arm} run"
    if (states == "completed").any():
        return f"{arm} value missing"
    return f"{arm} {states.iloc[-1]}"


def pair_values(runs: pd.DataFrame, metric: str, pair: ArmPair) -> tuple[pd.DataFrame, list[str]]:
    """(seed, a, b) of one comparison's usable pairs, and notes on what was dropped.
    `runs` holds the runs of the two arms, one execution mode each."""
    usable, notes = one_run_per_seed(runs)
    arms = [pair.first, pair.second]
    wide = (
        usable.pivot(index=PAIR_FIELD, columns="arm", values=metric)
        .reindex(index=sorted(set(runs[PAIR_FIELD].dropna())), columns=arms)
        .astype(float)
    )
    missing = wide.isna() if metric_for(metric).censored else ~np.isfinite(wide)
    complete = ~missing.any(axis=1)
    dropped = [
        f"{seed} ({', '.join(_unpaired_reason(runs, arm, seed) for arm in arms if missing.at[seed, arm])})"
        for seed in wide.index[~complete]
    ]
    if dropped:
        notes.append("unpaired seeds dropped: " + "; ".join(dropped))
    pairs = wide[complete].set_axis(["a", "b"], axis=1).rename_axis(index=PAIR_FIELD).reset_index()
    return pairs, notes


def by_execution_mode(runs: pd.DataFrame, pair: ArmPair):
    """One comparison per (mode of A, mode of B) present: runs of different execution
    modes (eager, compiled, graph, XLA) are never pooled."""
    modes = {
        arm: sorted(runs.loc[runs["arm"] == arm, MODE_FIELD].dropna().unique()) or [None]
        for arm in (pair.first, pair.second)
    }
    for mode_a in modes[pair.first]:
        for mode_b in modes[pair.second]:
            chosen = ((runs["arm"] == pair.first) & (runs[MODE_FIELD] == mode_a)) | (
                (runs["arm"] == pair.second) & (runs[MODE_FIELD] == mode_b)
            )
            yield {"mode_a": mode_a, "mode_b": mode_b}, runs[chosen]


def comparisons(results: pd.DataFrame, pairs: list[ArmPair] | None = None):
    """(group values, arm pair, modes, runs) of every comparison, in report order: per
    value of the grouping fields, every requested arm pair (default: every two arms of
    the sweep); a group without runs of an arm still gets its row, with no pairs."""
    keyed = with_arm(results.dropna(subset=list(REQUIRED_KEY)))
    pairs = pairs or default_pairs(keyed["arm"])
    for group, group_runs in keyed.groupby(list(GROUP), sort=True):
        for pair in pairs:
            for modes, runs in by_execution_mode(group_runs, pair):
                yield dict(zip(GROUP, group, strict=True)), pair, modes, runs


def check_pairs(results: pd.DataFrame, pairs: list[ArmPair]) -> None:
    """Every arm named in `pairs` must have runs in the sweep (ValueError naming the arms there)."""
    present = set(arm_names(results.dropna(subset=list(REQUIRED_KEY))))
    unknown = sorted({arm for pair in pairs for arm in (pair.first, pair.second)} - present)
    if unknown:
        raise ValueError(
            f"--compare: no runs of arm(s) {', '.join(unknown)} in this sweep; "
            f"arms present: {', '.join(sorted(present)) or 'none'}"
        )


PAIR_COLUMNS = (*GROUP, "metric", "arm_a", "arm_b", "mode_a", "mode_b", PAIR_FIELD, "a", "b", "diff")


def compare(
    results: pd.DataFrame, pairs: list[ArmPair] | None = None, margins: dict[str, verdicts.Margin] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(statistical_results, pairs): one statistics row per comparison and metric, and
    the per-seed paired values behind them (for the difference plots). `margins`: the
    equivalence margins in force (benchmark.analysis.verdicts.margins; default: the
    schema's defaults)."""
    margins = margins or verdicts.margins()
    rows, pair_tables = [], []
    metrics = compared_metrics(results)
    for group, pair, modes, runs in comparisons(results, pairs):
        arms = {"arm_a": pair.first, "arm_b": pair.second}
        for metric in metrics:
            if metric not in COMPARED_METRICS and runs[metric].isna().all():
                continue  # another dataset's target
            values, notes = pair_values(runs, metric, pair)
            statistics = censored_statistics if metric_for(metric).censored else paired_statistics
            margin = margins[verdicts.margin_key(metric)]
            row = statistics(values["a"].to_numpy(), values["b"].to_numpy(), margin)
            row["note"] = "; ".join(filter(None, [row["note"], *notes]))
            row["seeds"] = " ".join(str(int(s)) for s in values[PAIR_FIELD])
            rows.append({**group, "metric": metric, **arms, **modes, **row})
            pair_tables.append(values.assign(**group, metric=metric, **arms, **modes, diff=values["a"] - values["b"]))
    table = pd.DataFrame(rows, columns=list(STAT_COLUMNS))
    # each test's family: the comparisons it ran on (time to accuracy: the t-test uses the
    # pairs where both arms reached the target, the Wilcoxon test every pair)
    for p_column, holm_column, count in (("wilcoxon_p", "holm_p", "n_pairs"), ("ttest_p", "holm_ttest_p", "n_reached")):
        table[holm_column] = _holm_within_metric(table, p_column, count)
    table["verdict"] = [
        verdicts.verdict(difference_shown=holm_t < verdicts.ALPHA, equivalence_shown=tost_p < verdicts.ALPHA)
        for holm_t, tost_p in zip(table["holm_ttest_p"], table["tost_p"], strict=True)
    ]
    frame = (
        pd.concat(pair_tables, ignore_index=True)[list(PAIR_COLUMNS)]
        if pair_tables
        else pd.DataFrame(columns=list(PAIR_COLUMNS))
    )
    return table, frame


def _holm_within_metric(table: pd.DataFrame, p_column: str, count: str = "n_pairs") -> pd.Series:
    """Holm within each metric over the comparisons that were tested (`count` ≥ 2 pairs);
    the others keep their conventional 1.0."""
    adjusted = pd.Series(1.0, index=table.index)
    tested = table[table[count] >= 2]
    for _, family in tested.groupby("metric"):
        adjusted[family.index] = holm(family[p_column].to_numpy())
    return adjusted
