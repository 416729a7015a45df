"""Equivalence margins, the equivalence test, the verdict rule and the seeds planner.

"Not significant" is not "the same": whether two arms give the same result is an
equivalence test against a margin declared before looking (docs/protocol.md §7,
"Verdicts"). Per comparison and metric, with the paired differences d = A − B:

- the margin m > 0 comes from the sweep's `analysis.margins` (benchmark.spec.config:
  accuracy metrics in percentage points, the rest in percent of the second arm's
  mean), overridable with `benchmark.analyze --margin metric=value`;
- TOST: two one-sided paired t-tests at ALPHA, H0 Δ ≤ −m and H0 Δ ≥ +m; `tost_p` is
  the larger of their p-values, and it is below ALPHA exactly when the 90% t-interval
  of Δ lies inside (−m, +m);
- beside it, distribution-free: whether the 90% paired-bootstrap CI lies inside;
- the verdict (`verdict`, the one place the rule is applied) from the difference test
  and the TOST together;
- the planner: how many seed pairs a conclusion would take, from an upper confidence
  bound on the standard deviation of the differences.

Imports no framework (scipy only).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import stats

from benchmark.analysis.time_to_accuracy import EPOCHS_PREFIX, SECONDS_PREFIX
from benchmark.spec.config import MarginsConfig

# One α for everything a verdict rests on: the two-sided difference test, and each of
# the TOST's one-sided tests (hence the 90% interval: the TOST at α is the 1 − 2α CI).
ALPHA = 0.05
# The power a planned number of seeds is meant to reach (the usual design target).
POWER = 0.80
# The planner plugs in the 80% one-sided upper confidence bound of the differences'
# standard deviation, not the estimate: with 3 to 5 pairs the estimate is too often
# small by chance, and a plan built on it too often falls short (Browne 1995,
# "On the use of a pilot sample for sample size determination", Stat. Med. 14).
SD_UPPER_CONFIDENCE = 0.80
# Beyond this many pairs the planner says "more than" rather than searching on.
MAX_PAIRS = 10_000

EQUIVALENT = "equivalent"
DIFFERENT = "different"
NEGLIGIBLE = "different but negligible"
INCONCLUSIVE = "inconclusive"
VERDICTS = (EQUIVALENT, NEGLIGIBLE, DIFFERENT, INCONCLUSIVE)

# The unit of each margin (the fields of benchmark.spec.config.MarginsConfig): accuracy
# metrics are fractions shown in percentage points, so an absolute margin in points is
# what a reader means; speed and time depend on the hardware, so their margins are a
# share of the second arm's mean.
POINTS, PERCENT = "points", "percent"
MARGIN_UNITS = {
    "test_accuracy": POINTS,
    "test_macro_f1": POINTS,
    "images_per_sec_avg": PERCENT,
    "epochs_to_val_acc": PERCENT,
    "seconds_to_val_acc": PERCENT,
}
# what a time-to-accuracy column's margin is called (one margin for all its targets)
_TTA_KEYS = {EPOCHS_PREFIX: "epochs_to_val_acc", SECONDS_PREFIX: "seconds_to_val_acc"}


class MarginError(ValueError):
    """A margin that is not a positive number, or one for a metric the analysis does not compare."""


def margin_key(metric: str) -> str:
    """The `analysis.margins` key of a compared column (time-to-accuracy columns share one per kind)."""
    for prefix, key in _TTA_KEYS.items():
        if metric.startswith(prefix):
            return key
    return metric


@dataclass(frozen=True)
class Margin:
    """One declared margin: `value` in points (×100 of a stored fraction) or in percent
    of the second arm's mean; `source` says where it was declared."""

    key: str
    value: float
    source: str = "default"

    @property
    def unit(self) -> str:
        return MARGIN_UNITS[self.key]

    def absolute(self, mean_b: float) -> float:
        """The margin in the metric's stored unit, for a comparison whose second arm has mean `mean_b`."""
        if self.unit == POINTS:
            return self.value / 100.0
        return abs(mean_b) * self.value / 100.0 if math.isfinite(mean_b) else math.nan

    def label(self) -> str:
        if self.unit == POINTS:
            return f"±{self.value:g} points"
        return f"±{self.value:g}% of the second arm's mean"


def _positive(text: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise MarginError(f"{where}: {text!r} is not a number; write e.g. test_accuracy=0.3") from None
    if not math.isfinite(value) or value <= 0:
        raise MarginError(f"{where}: the margin must be a number > 0, got {text}")
    return value


def _check_key(key: str, where: str) -> None:
    if key not in MARGIN_UNITS:
        raise MarginError(f"{where}: no compared metric {key!r}; margins exist for {', '.join(MARGIN_UNITS)}")


def margins(declared: dict | None = None, overrides: list[str] | None = None) -> dict[str, Margin]:
    """The margins in force: MarginsConfig's defaults, then the sweep's `declared`
    analysis.margins (a mapping), then `overrides` ("metric=value", the command line).
    Raises MarginError on an unknown metric or a value that is not a number > 0."""
    defaults = dataclasses.asdict(MarginsConfig())
    out = {key: Margin(key, float(value)) for key, value in defaults.items()}
    assert set(out) == set(MARGIN_UNITS)  # noqa: S101  one unit per schema field, checked by tests too
    for key, value in (declared or {}).items():
        _check_key(str(key), "analysis.margins")
        out[key] = Margin(key, _positive(value, f"analysis.margins.{key}"), "the sweep's config")
    for text in overrides or []:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"\w+", key):
            raise MarginError(f"--margin {text!r}: write METRIC=VALUE, e.g. --margin test_accuracy=0.3")
        _check_key(key, f"--margin {text}")
        out[key] = Margin(key, _positive(value.strip(), f"--margin {text}"), "--margin")
    return out


# ------------------------------------------------------------------ the equivalence test


def t_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    """The paired t confidence interval of mean(diffs); [Δ, Δ] without spread, NaN under 2 pairs."""
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    mean, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def tost(diffs: np.ndarray, margin: float, spread: bool = True) -> float:
    """p of the two one-sided paired t-tests of H0 |Δ| ≥ margin (the larger of the two).

    Degenerate cases (docs/analysis.md §7): under 2 pairs, or no finite margin, p = 1.0
    (nothing can be shown); without spread (`spread` False: the differences are all
    equal within the analysis' tolerance) the t statistics are ±inf and p takes its
    limit, 0.0 when |Δ| < margin and 1.0 otherwise."""
    n = len(diffs)
    if n < 2 or not math.isfinite(margin) or margin <= 0:
        return 1.0
    mean = float(np.mean(diffs))
    if not spread:
        return 0.0 if abs(mean) < margin else 1.0
    se = float(np.std(diffs, ddof=1)) / math.sqrt(n)
    p_lower = stats.t.sf((mean + margin) / se, n - 1)  # H0: Δ ≤ −margin
    p_upper = stats.t.cdf((mean - margin) / se, n - 1)  # H0: Δ ≥ +margin
    return float(max(p_lower, p_upper))


def inside(low: float, high: float, margin: float) -> bool:
    """Whether the interval [low, high] lies strictly inside (−margin, +margin)."""
    return bool(math.isfinite(low) and math.isfinite(high) and -margin < low and high < margin)


# ------------------------------------------------------------------ the verdict


def verdict(difference_shown: bool, equivalence_shown: bool) -> str:
    """The one verdict rule (docs/protocol.md §7): the difference test says whether Δ ≠ 0
    is shown, the TOST whether |Δ| < margin is; each alone, both, or neither."""
    if equivalence_shown:
        return NEGLIGIBLE if difference_shown else EQUIVALENT
    return DIFFERENT if difference_shown else INCONCLUSIVE


# ------------------------------------------------------------------ the planner


def sd_upper_bound(sd: float, n: int, confidence: float = SD_UPPER_CONFIDENCE) -> float:
    """One-sided upper confidence bound of a normal standard deviation from n values:
    sd · sqrt((n − 1) / χ²_{1−confidence, n−1})."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return sd * math.sqrt((n - 1) / stats.chi2.ppf(1 - confidence, n - 1))


def _nct_sf(x: float, df: int, ncp: float) -> float:
    """P(T > x) for T noncentral t; scipy returns nan far in a tail (e.g. a large ncp), where
    the normal approximation is exact to many digits."""
    value = float(stats.nct.sf(x, df, ncp))
    return value if math.isfinite(value) else float(stats.norm.sf(x - ncp))


def tost_power(n: int, margin: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the paired TOST with n pairs when the true Δ is 0: each one-sided test
    rejects with probability P(T > t_{1−α}) for T noncentral t (n − 1 df, noncentrality
    margin·√n / sd), and both reject with probability at least 2·that − 1 (the usual
    approximation, a lower bound: seeds planned on it are never too few)."""
    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0
    one_sided = _nct_sf(stats.t.ppf(1 - alpha, n - 1), n - 1, margin * math.sqrt(n) / sd)
    return float(max(0.0, 2.0 * one_sided - 1.0))


def ttest_power(n: int, effect: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs when the true Δ is `effect`."""
    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0
    df, ncp = n - 1, effect * math.sqrt(n) / sd
    critical = stats.t.ppf(1 - alpha / 2, df)
    return _nct_sf(critical, df, ncp) + _nct_sf(critical, df, -ncp)  # T's law at −ncp mirrors the lower tail


def pairs_needed(power_at, target: float = POWER) -> int | None:
    """The smallest n ≥ 2 with power_at(n) ≥ target (power grows with n: a doubling
    search, then bisection); None beyond MAX_PAIRS."""
    if power_at(2) >= target:
        return 2
    high = 4
    while power_at(high) < target:
        if high >= MAX_PAIRS:
            return None
        high = min(2 * high, MAX_PAIRS)
    low = high // 2  # power_at(low) < target
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if power_at(middle) < target else (low, middle)
    return high


def plan(diffs: np.ndarray, margin: float, spread: bool = True) -> dict:
    """Seed pairs needed (in total) for (a) the TOST to show equivalence within ±margin
    with POWER if the true Δ were 0, and (b) the paired t-test to detect |Δ| = margin
    with POWER, both at the SD_UPPER_CONFIDENCE upper bound of the observed standard
    deviation of the differences. NaN where it cannot be planned (under 2 pairs, no
    finite margin); inf where more than MAX_PAIRS would be needed."""
    n = len(diffs)
    out = {"sd_ucb": math.nan, "seeds_for_equivalence": math.nan, "seeds_for_difference": math.nan}
    if n < 2 or not math.isfinite(margin) or margin <= 0:
        return out
    sd = float(np.std(diffs, ddof=1)) if spread else 0.0
    ucb = sd_upper_bound(sd, n)
    out["sd_ucb"] = ucb
    equivalence = pairs_needed(lambda k: tost_power(k, margin, ucb))
    difference = pairs_needed(lambda k: ttest_power(k, margin, ucb))
    out["seeds_for_equivalence"] = math.inf if equivalence is None else equivalence
    out["seeds_for_difference"] = math.inf if difference is None else difference
    return out
