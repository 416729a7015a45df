"""Keras vs PyTorch, paired by seed: the statistics of statistical_results.csv.

For every (dataset, model, precision) and every compared metric, the completed Keras
and PyTorch runs with the same seed form a pair and d = PyTorch − Keras is its
difference (seeds fix the data split, the initialisation draw and the augmentation
stream, so pairing removes that shared variance). Per comparison:

- delta = mean(PyTorch) − mean(Keras) = mean(d), with a 95% percentile bootstrap CI
  (10,000 resamples of the pairs, fixed RNG seed, so the report is reproducible);
- wilcoxon_p: two-sided Wilcoxon signed-rank test of d (zero differences dropped, as
  in Wilcoxon's and scipy's convention); exact null distribution when the |d| are
  distinct, exact enumeration of the 2^n sign flips when they tie (n ≤ 20), normal
  approximation beyond; wilcoxon_min_p = 2 / 2^n is the smallest p the exact test can
  reach with n non-zero differences (0.0625 for n = 5: SPEC §9);
- ttest_p: paired t-test (scipy.stats.ttest_rel);
- holm_p / holm_ttest_p: Holm step-down adjustment of wilcoxon_p / ttest_p within one
  metric, across the comparisons that could be tested (n_pairs ≥ 2);
- cohens_d: Cohen's d for paired samples, d_z = mean(d) / std(d, ddof=1);
- cliffs_delta: P(PyTorch > Keras) − P(PyTorch < Keras) over all cross pairs of the
  two arms' values, in [−1, 1];
- mean/std (ddof=1) of each arm over the paired seeds only.

Degenerate cases get documented finite values and a `note` (never inf, never a crash):

- no pair: delta and CI NaN, p = 1.0, d = 0.0, Cliff's delta = 0.0;
- one pair: delta and CI = that difference, p = 1.0, d = 0.0 (no test is possible);
- all differences zero: delta = 0, CI [0, 0], p = 1.0, d = 0.0;
- differences all equal but not zero (zero variance): t and d_z are unbounded; the
  t-test p is reported as 0.0 (its limit) and d_z as ±1e6 (D_Z_CAP, with the sign of
  delta); |d_z| is capped there in every case; the Wilcoxon test is unaffected;
- several completed runs of one framework and seed: one is used (see
  one_run_per_seed) and the note says which;
- a seed with only one arm completed (the other missing, failed or still running) or
  with a missing value is dropped, and named in the note.

Differences within REL_TOL of the arms' magnitude are treated as exactly zero and as
ties, so floating-point noise neither invents an effect nor breaks a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.analysis.runs import KEY

GROUP = ("dataset", "model", "precision")
FRAMEWORKS = ("keras", "pytorch")  # delta = PyTorch − Keras
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20240101
CONFIDENCE = 0.95
D_Z_CAP = 1e6
REL_TOL = 1e-9
EXACT_PERMUTATION_MAX_N = 20


@dataclass(frozen=True)
class Metric:
    """A compared metric and how to speak about it (summary sentences, plot labels)."""

    name: str
    label: str
    unit: str
    scale: float  # display value = scale × stored value
    more: str  # the word for a positive delta ...
    less: str
    phrase: str  # ... and what it qualifies: "PyTorch is 0.8 points higher in test accuracy than Keras"


COMPARED_METRICS = {
    m.name: m
    for m in (
        Metric("test_accuracy", "test accuracy", "points", 100.0, "higher", "lower", "in test accuracy"),
        Metric("test_macro_f1", "test macro-F1", "points", 100.0, "higher", "lower", "in test macro-F1"),
        Metric("images_per_sec_avg", "training throughput", "images/s", 1.0, "faster", "slower", "in training"),
    )
}

STAT_COLUMNS = (
    *GROUP,
    "metric",
    "keras_mode",
    "pytorch_mode",
    "n_pairs",
    "seeds",
    "mean_keras",
    "std_keras",
    "mean_pytorch",
    "std_pytorch",
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
    "note",
)


# ------------------------------------------------------------------ single statistics


def bootstrap_ci(diffs: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(diffs), resampling whole pairs with a fixed seed."""
    if len(diffs) == 0:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def wilcoxon_test(diffs: np.ndarray) -> tuple[float, str]:
    """(two-sided p, method) of the Wilcoxon signed-rank test on differences already
    snapped by `_snap` (exact zeros and exact ties)."""
    nonzero = diffs[diffs != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0, "none"
    if len(np.unique(np.abs(nonzero))) == n:
        method, name = "exact", "exact"
    elif n <= EXACT_PERMUTATION_MAX_N:
        method, name = stats.PermutationMethod(n_resamples=np.inf), "exact (ties: all sign flips)"
    else:
        method, name = "asymptotic", "normal approximation"
    return float(stats.wilcoxon(nonzero, method=method).pvalue), name


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
    """Differences rounded to REL_TOL × scale: float noise becomes exact zeros and ties."""
    step = REL_TOL * scale if scale > 0 else REL_TOL
    return np.round(diffs / step) * step


# ------------------------------------------------------------------ one comparison


def paired_statistics(keras: np.ndarray, pytorch: np.ndarray) -> dict:
    """All statistics of one comparison from the paired values (same seed order)."""
    keras, pytorch = np.asarray(keras, dtype=float), np.asarray(pytorch, dtype=float)
    diffs = pytorch - keras
    n = len(diffs)
    scale = float(np.max(np.abs(np.concatenate([keras, pytorch])))) if n else 0.0
    snapped = _snap(diffs, scale)
    row = {
        "n_pairs": n,
        "mean_keras": keras.mean() if n else np.nan,
        "std_keras": keras.std(ddof=1) if n > 1 else np.nan,
        "mean_pytorch": pytorch.mean() if n else np.nan,
        "std_pytorch": pytorch.std(ddof=1) if n > 1 else np.nan,
        "delta": diffs.mean() if n else np.nan,
        "wilcoxon_min_p": wilcoxon_min_p(int(np.count_nonzero(snapped))),
        "cliffs_delta": cliffs_delta(pytorch, keras),
    }
    row["ci_low"], row["ci_high"] = bootstrap_ci(diffs)
    untestable = {"wilcoxon_p": 1.0, "wilcoxon_method": "none", "ttest_p": 1.0, "cohens_d": 0.0}
    if n == 0:
        return {**row, **untestable, "note": "no completed Keras/PyTorch pair: nothing to compare"}
    if n == 1:
        return {**row, **untestable, "note": "n_pairs < 2: no test possible; p = 1.0 and d = 0.0 by convention"}
    if not snapped.any():
        return {**row, **untestable, "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                "note": "all differences are zero: p = 1.0 and d = 0.0"}
    row["wilcoxon_p"], row["wilcoxon_method"] = wilcoxon_test(snapped)
    if np.ptp(snapped) == 0:  # t and d_z grow without bound as the spread goes to zero
        return {**row, "ttest_p": 0.0, "cohens_d": cohens_dz(snapped),
                "note": f"all differences are equal (zero variance): t-test p = 0.0 (its limit) "
                        f"and d_z = ±{D_Z_CAP:g} (the cap) by convention"}
    return {**row, "ttest_p": float(stats.ttest_rel(pytorch, keras).pvalue), "cohens_d": cohens_dz(diffs), "note": ""}


# ------------------------------------------------------------------ the whole sweep


def one_run_per_seed(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Completed runs, one per (framework, seed). Of duplicates, the shallowest run
    directory wins (a run with extra overrides sits below its key's protocol run),
    then the one that sorts last (Hydra's timestamped sweep folders: the newest)."""
    completed = runs[runs["state"] == "completed"]
    depth = completed["run_dir"].str.count("/")
    completed = completed.assign(_depth=depth).sort_values(["_depth", "run_dir"], ascending=[True, False])
    chosen = completed.drop_duplicates(["framework", "seed"], keep="first").drop(columns="_depth")
    counts = completed.groupby(["framework", "seed"]).size()
    notes = [
        f"{counts[framework, seed]} completed {framework} runs for seed {seed}: used {run_dir}"
        for framework, seed, run_dir in chosen[["framework", "seed", "run_dir"]].itertuples(index=False)
        if counts[framework, seed] > 1
    ]
    return chosen, notes


def _unpaired_reason(runs: pd.DataFrame, framework: str, seed: int) -> str:
    """Why `framework` has no usable value for `seed`: its state, or that no run exists."""
    states = runs.loc[(runs["framework"] == framework) & (runs["seed"] == seed), "state"]
    if states.empty:
        return f"no {framework} run"
    if (states == "completed").any():
        return f"{framework} value missing"
    return f"{framework} {states.iloc[-1]}"


def pair_values(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """(seed, keras, pytorch) of one comparison's usable pairs, and notes on what was dropped."""
    usable, notes = one_run_per_seed(runs)
    wide = (usable.pivot(index="seed", columns="framework", values=metric)
            .reindex(index=sorted(set(runs["seed"].dropna())), columns=list(FRAMEWORKS)).astype(float))
    missing = ~np.isfinite(wide)
    complete = ~missing.any(axis=1)
    dropped = [
        f"{seed} ({', '.join(_unpaired_reason(runs, fw, seed) for fw in FRAMEWORKS if missing.at[seed, fw])})"
        for seed in wide.index[~complete]
    ]
    if dropped:
        notes.append("unpaired seeds dropped: " + "; ".join(dropped))
    pairs = wide[complete].rename_axis(index="seed", columns=None).reset_index()
    return pairs, notes


def by_execution_mode(runs: pd.DataFrame):
    """One comparison per (Keras mode, PyTorch mode) present: runs of different
    execution modes (eager / torch.compile / tf.function / XLA) are never pooled."""
    runs = runs.copy()
    for fw in FRAMEWORKS:  # a run without summary.json (mode unknown) joins its framework's only mode
        mine = runs["framework"] == fw
        known = set(runs.loc[mine, "execution_mode"].dropna()) - {"unknown"}
        if len(known) == 1:
            runs.loc[mine, "execution_mode"] = known.pop()
    modes = {fw: sorted(runs.loc[runs["framework"] == fw, "execution_mode"].dropna().unique()) or [None]
             for fw in FRAMEWORKS}
    for keras_mode in modes["keras"]:
        for pytorch_mode in modes["pytorch"]:
            chosen = (((runs["framework"] == "keras") & (runs["execution_mode"] == keras_mode))
                      | ((runs["framework"] == "pytorch") & (runs["execution_mode"] == pytorch_mode)))
            yield {"keras_mode": keras_mode, "pytorch_mode": pytorch_mode}, runs[chosen]


def compare(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(statistical_results, pairs): one statistics row per comparison and metric, and
    the per-seed paired values behind them (for the difference plots)."""
    rows, pair_tables = [], []
    keyed = results.dropna(subset=list(KEY))
    for group, group_runs in keyed.groupby(list(GROUP), sort=True):
        for modes, runs in by_execution_mode(group_runs):
            for metric in COMPARED_METRICS:
                pairs, notes = pair_values(runs, metric)
                row = paired_statistics(pairs["keras"].to_numpy(), pairs["pytorch"].to_numpy())
                row["note"] = "; ".join(filter(None, [row["note"], *notes]))
                row["seeds"] = " ".join(str(int(s)) for s in pairs["seed"])
                rows.append({**dict(zip(GROUP, group)), "metric": metric, **modes, **row})
                pair_tables.append(pairs.assign(**dict(zip(GROUP, group)), metric=metric, **modes,
                                                diff=pairs["pytorch"] - pairs["keras"]))
    table = pd.DataFrame(rows, columns=list(STAT_COLUMNS))
    for p_column, holm_column in (("wilcoxon_p", "holm_p"), ("ttest_p", "holm_ttest_p")):
        table[holm_column] = _holm_within_metric(table, p_column)
    pair_columns = [*GROUP, "metric", "keras_mode", "pytorch_mode", "seed", "keras", "pytorch", "diff"]
    pairs = pd.concat(pair_tables, ignore_index=True)[pair_columns] if pair_tables else pd.DataFrame(columns=pair_columns)
    return table, pairs


def _holm_within_metric(table: pd.DataFrame, p_column: str) -> pd.Series:
    """Holm within each metric over the comparisons that were tested (n_pairs ≥ 2);
    the others keep their conventional 1.0."""
    adjusted = pd.Series(1.0, index=table.index)
    tested = table[table["n_pairs"] >= 2]
    for _, family in tested.groupby("metric"):
        adjusted[family.index] = holm(family[p_column].to_numpy())
    return adjusted
