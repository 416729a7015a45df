"""The report's figures: training curves, comparison dots, paired differences, verdicts
against the equivalence margins.

Drawn with seaborn on matplotlib ``Figure`` objects rendered by the Agg canvas,
never through pyplot: no global backend switch, no open-figure registry to leak, so
the report can be built on a headless node or from a running notebook. Only
completed runs are drawn, the same runs that enter the statistics. Every arm
(benchmark.spec.runkey; stats.arm_names) keeps one colour (Okabe-Ito, colour-blind safe)
and one line style in every figure, so that curves which coincide stay apart. Runs
of one arm in different execution modes (eager, compiled, graph, XLA)
are never averaged together: where a sweep has several, each mode is an arm of its
own, named "arm (mode)".
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from benchmark.analysis import verdicts
from benchmark.analysis.divergence import CURVES
from benchmark.analysis.stats import GROUP, metric_for, with_arm
from benchmark.spec.runkey import GROUP_FIELDS, MODE_FIELD, PAIR_FIELD, RUN_KEY, VARIANT_FIELD

# Okabe & Ito (2008), colour-blind safe; the arms take them in alphabetical order
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
DASHES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
DPI = 100
CURVE_PANELS = (
    ("train_loss", "training loss"),
    ("val_accuracy", "validation accuracy"),
    ("val_macro_f1", "validation macro-F1"),
    ("learning_rate", "learning rate"),
)
BAR_FIGURES = (  # file stem, results column, axis label, display scale
    ("accuracy", "test_accuracy", "test accuracy (%)", 100.0),
    ("throughput", "images_per_sec_avg", "training images / s", 1.0),
)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _seeds_text(counts: pd.Series) -> str:
    """ "5 seeds", or "3–5 seeds" where comparisons have different numbers of seeds."""
    low, high = int(counts.min()), int(counts.max())
    return f"{high} seed{'s' if high != 1 else ''}" if low == high else f"{low}–{high} seeds"


def with_arms(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus a "label" column: the run's arm, or "arm (mode)" where the frame
    holds runs of that arm in more than one execution mode."""
    frame = with_arm(frame) if "arm" not in frame else frame
    modes = frame[MODE_FIELD].fillna("unknown")
    several = modes.groupby(frame["arm"]).transform("nunique") > 1
    return frame.assign(label=frame["arm"].where(~several, frame["arm"] + " (" + modes + ")"))


def arm_styles(frame: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """(colour, line style, marker) of every label, in alphabetical order of the labels."""
    labels = sorted(frame["label"].unique())
    return {
        label: (COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)], MARKERS[i % len(MARKERS)])
        for i, label in enumerate(labels)
    }


def _arm_legend(fig: Figure, styles: dict, seeds: str) -> None:
    handles = [
        Line2D([], [], color=colour, ls=dash, lw=2.2, label=f"{label} (mean over {seeds})")
        for label, (colour, dash, _) in styles.items()
    ]
    handles.append(Line2D([], [], color="grey", lw=0.7, alpha=0.6, label="one seed"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False)


def _file_stem(values: tuple) -> str:
    """A file name part from a group's values (GROUP order, then anything after it),
    leaving out empty ones and a key field at its legacy value (the native protocol)."""
    legacy = {i: f.legacy for i, name in enumerate(GROUP) for f in RUN_KEY if f.name == name and f.legacy is not None}
    return "_".join(_safe(v) for i, v in enumerate(values) if v != "" and legacy.get(i, object()) != v)


def _title(group: dict) -> str:
    """ "dataset / model / precision[ / protocol]": a field at its legacy value (the native
    protocol) is left out, as in directory names."""
    title = " / ".join(str(group[f.name]) for f in RUN_KEY if f.name in GROUP_FIELDS and not f.at_legacy(group))
    return title + (f" [{group[VARIANT_FIELD]}]" if group.get(VARIANT_FIELD) else "")


# ------------------------------------------------------------------ curves


def curves_figure(curves: pd.DataFrame, title: str) -> Figure:
    """Four panels against epoch: each seed a thin line, each arm's mean bold, in the
    arm's colour and line style (`curves` carries the "label" column of with_arms).

    Drawn with Axes.plot on an epoch × run table (one call per arm and panel) rather
    than one seaborn call per layer: 18 such figures otherwise dominate the report's
    build time."""
    styles = arm_styles(curves)
    fig = Figure(figsize=(11, 7.5))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.91, bottom=0.12, hspace=0.3, wspace=0.18)
    for ax, (column, label) in zip(fig.subplots(2, 2).ravel(), CURVE_PANELS, strict=True):
        for arm, runs in curves.groupby("label"):
            wide = runs.pivot(index="epoch", columns="run_dir", values=column)
            colour, dash, _ = styles[arm]
            ax.plot(wide.index, wide.to_numpy(), color=colour, ls=dash, lw=0.6, alpha=0.35)
            ax.plot(wide.index, wide.mean(axis=1).to_numpy(), color=colour, ls=dash, lw=2.2)
        ax.set(title=label, xlabel="epoch")
    seeds = curves.groupby("label")["run_dir"].nunique()
    _arm_legend(fig, styles, _seeds_text(seeds))
    fig.suptitle(title)
    return fig


def plot_curves(curves: pd.DataFrame, results: pd.DataFrame, out: Path) -> list[Path]:
    """curves_<dataset>_<model>_<precision>[_<variant>].png for every group with completed runs."""
    done = curves[curves["state"] == "completed"].merge(results[["run_dir", MODE_FIELD]], on="run_dir", how="left")
    done = with_arms(done.assign(variant=done[VARIANT_FIELD].fillna("")))
    paths = []
    for group, runs in done.groupby(list(GROUP), sort=True):
        name = "curves_" + _file_stem(group) + ".png"
        paths.append(_save(curves_figure(runs, _title(dict(zip(GROUP, group, strict=True)))), out / name))
    return paths


# ------------------------------------------------------------------ comparison dots


def bars_figure(runs: pd.DataFrame, column: str, label: str, scale: float, title: str) -> Figure:
    """Mean per arm and dataset-model as a dot with ± std over seeds, arms side by side.

    Dots rather than bars: the axis starts near the data, not at 0, so gaps of a
    fraction of a point and their error bars stay visible."""
    data = with_arms(runs)
    data = data.assign(
        value=data[column] * scale,
        comparison=data[list(GROUP_FIELDS[:2])].astype(str).agg("\n".join, axis=1)
        + data[VARIANT_FIELD].map(lambda v: f"\n[{v}]" if v else ""),
    )
    order = sorted(data["comparison"].unique())
    styles = arm_styles(data)
    fig = Figure(figsize=(max(6.0, 1.2 * len(order) + 2), 4.8), layout="constrained")
    ax = fig.subplots()
    sns.pointplot(
        data=data,
        x="comparison",
        y="value",
        hue="label",
        order=order,
        hue_order=list(styles),
        palette={k: v[0] for k, v in styles.items()},
        markers=[v[2] for v in styles.values()],
        # seaborn divides the dodge by (arms - 1)
        linestyles="none",
        dodge=0.45 if len(styles) > 1 else False,
        errorbar="sd",
        capsize=0.08,
        err_kws={"linewidth": 1.2},
        ax=ax,
    )
    seeds = data.groupby(["comparison", "label"])[PAIR_FIELD].nunique()
    ax.set(xlabel="", ylabel=label, title=f"{title}: mean ± std over {_seeds_text(seeds)}")
    ax.legend(title="", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the dots
    return fig


def plot_bars(results: pd.DataFrame, out: Path) -> list[Path]:
    """bars_accuracy_<precision>.png and bars_throughput_<precision>.png (where there are values)."""
    done = results[results["state"] == "completed"]
    paths = []
    for precision, runs in done.groupby("precision", sort=True):
        for stem, column, label, scale in BAR_FIGURES:
            if runs[column].isna().all():
                continue
            fig = bars_figure(runs, column, label, scale, f"{label} ({precision})")
            paths.append(_save(fig, out / f"bars_{stem}_{_safe(precision)}.png"))
    return paths


# ------------------------------------------------------------------ paired differences


def _diff_labels(frame: pd.DataFrame) -> pd.Series:
    """ "dataset / model / precision: A − B", plus "[mode of A vs mode of B]" where one
    comparison was made in several execution modes."""
    label = frame.apply(_title, axis=1) + ": " + frame["arm_a"] + " − " + frame["arm_b"]
    modes = frame["mode_a"].fillna("?") + " vs " + frame["mode_b"].fillna("?")
    several = modes.groupby(label).transform("nunique") > 1
    return label.where(~several, label + " [" + modes + "]")


def diff_figure(pairs: pd.DataFrame, stats: pd.DataFrame, metric_name: str) -> Figure:
    """Per comparison: each seed's Δ as a point, the mean Δ with its bootstrap CI."""
    metric = metric_for(metric_name)
    stats = stats[stats["n_pairs"] > 0].assign(label=lambda s: _diff_labels(s))
    pairs = pairs.assign(label=_diff_labels(pairs), value=pairs["diff"] * metric.scale)
    pairs = pairs[np.isfinite(pairs["value"])]  # a target one arm never reached has no Δ to draw
    order = list(stats["label"])
    fig = Figure(figsize=(8, 1.2 + 0.32 * len(order)), layout="constrained")
    ax = fig.subplots()
    sns.stripplot(data=pairs, x="value", y="label", order=order, color="0.55", size=4, jitter=0.15, ax=ax)
    delta = stats["delta"].to_numpy() * metric.scale
    error = [delta - stats["ci_low"].to_numpy() * metric.scale, stats["ci_high"].to_numpy() * metric.scale - delta]
    ax.errorbar(
        delta,
        range(len(order)),
        xerr=error,
        fmt="D",
        color="black",
        ms=5,
        capsize=3,
        lw=1.2,
        label="mean Δ, 95% bootstrap CI",
    )
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set(xlabel=f"Δ = first arm − second arm ({metric.unit})", ylabel="", title=f"Paired differences: {metric.label}")
    fig.legend(
        handles=[
            *ax.get_legend_handles_labels()[0],
            Line2D([], [], ls="", marker="o", color="0.55", ms=4, label="one seed's Δ"),
        ],
        loc="outside lower center",
        ncol=2,
        frameon=False,
    )
    return fig


def plot_diffs(pairs: pd.DataFrame, stats: pd.DataFrame, out: Path) -> list[Path]:
    """diff_<metric>.png for each compared metric with at least one pair."""
    paths = []
    for metric in dict.fromkeys(stats["metric"]):
        rows = stats[stats["metric"] == metric]
        if (rows["n_pairs"] > 0).any() and rows["delta"].notna().any():
            fig = diff_figure(pairs[pairs["metric"] == metric], rows, metric)
            paths.append(_save(fig, out / f"diff_{_safe(metric)}.png"))
    return paths


# ------------------------------------------------------------------ verdicts against the margins


VERDICT_COLOURS = {  # how sure the answer is: settled ones dark, an open one grey
    verdicts.EQUIVALENT: "#009E73",
    verdicts.NEGLIGIBLE: "#0072B2",
    verdicts.DIFFERENT: "#D55E00",
    verdicts.INCONCLUSIVE: "0.45",
}


def margins_figure(stats: pd.DataFrame, metric_name: str) -> Figure:
    """Per comparison: Δ with its 90% t-interval (thick, the TOST's) and 95% t-interval
    (thin, the difference test's) against the shaded ±margin, the verdict at the right.

    Margins of accuracy metrics are points, the same for every comparison, so Δ is drawn
    in points. The others are a percentage of each comparison's second arm, a different
    width per row: there Δ is divided by the row's margin, so that one band, −1 to +1,
    serves every row and rows of very different size stay readable."""
    metric = metric_for(metric_name)
    rows = stats[stats["n_pairs"] > 0].assign(label=lambda s: _diff_labels(s)).reset_index(drop=True)
    in_points = verdicts.MARGIN_UNITS[verdicts.margin_key(metric_name)] == verdicts.POINTS
    factor = np.full(len(rows), metric.scale) if in_points else 1.0 / rows["margin"].to_numpy(float)
    band = float(rows["margin"].iloc[0]) * metric.scale if in_points else 1.0
    y = np.arange(len(rows))
    fig = Figure(figsize=(11, 1.9 + 0.36 * len(rows)), layout="constrained")
    ax = fig.subplots()
    if np.isfinite(band):
        ax.axvspan(-band, band, color="#009E73", alpha=0.13, lw=0)
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    for level, width in (("t95", 1.4), ("t90", 5.0)):
        low, high = rows[f"{level}_low"].to_numpy(float) * factor, rows[f"{level}_high"].to_numpy(float) * factor
        ax.hlines(y, low, high, color="black", lw=width, alpha=0.85 if level == "t95" else 0.55)
    ax.plot(rows["delta"].to_numpy(float) * factor, y, ls="", marker="D", color="black", ms=5)
    ax.set_yticks(y, rows["label"])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first comparison on top
    ax.grid(axis="y", visible=False)
    # the verdicts as the right axis' tick labels, so that the layout leaves room for them
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(y, rows["verdict"])
    right.grid(False)
    for tick, text in zip(right.get_yticklabels(), rows["verdict"], strict=True):
        tick.set_color(VERDICT_COLOURS.get(text, "black"))
    declared = rows["margin_label"].iloc[0]
    xlabel = (
        f"Δ = first arm − second arm ({metric.unit}); margin {declared}"
        if in_points
        else f"Δ / margin (margin {declared}, per row)"
    )
    ax.set(xlabel=xlabel, ylabel="", title=f"Verdicts against the margin: {metric.label}")
    fig.legend(
        handles=[
            Line2D([], [], color="black", lw=5.0, alpha=0.55, label="90% t-interval (equivalence: inside the band)"),
            Line2D([], [], color="black", lw=1.4, label="95% t-interval (difference: excludes 0)"),
            Patch(color="#009E73", alpha=0.13, label="± margin"),
        ],
        loc="outside lower center",
        ncol=3,
        frameon=False,
    )
    return fig


def plot_margins(stats: pd.DataFrame, out: Path) -> list[Path]:
    """margins_<metric>.png for each compared metric with at least one pair."""
    paths = []
    for metric in dict.fromkeys(stats["metric"]):
        rows = stats[stats["metric"] == metric]
        if (rows["n_pairs"] > 0).any() and "verdict" in rows:
            paths.append(_save(margins_figure(rows, metric), out / f"margins_{_safe(metric)}.png"))
    return paths


# ------------------------------------------------------------------ framework vs seed noise


def divergence_figure(rows: pd.DataFrame, title: str) -> Figure:
    """One panel per curve: the framework gap on the same seed (solid, black) against
    each arm's spread between seeds (its arm colour, dashed), by epoch."""
    arm_a, arm_b = rows["arm_a"].iloc[0], rows["arm_b"].iloc[0]
    styles = arm_styles(pd.DataFrame({"label": [arm_a, arm_b]}))
    fig = Figure(figsize=(11, 4.2))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.26, wspace=0.2)
    for ax, (curve, label) in zip(fig.subplots(1, 2), CURVES.items(), strict=True):
        mine = rows[rows["curve"] == curve].sort_values("epoch")
        ax.plot(mine["epoch"], mine["framework_gap"], color="black", lw=2.2, marker="o", ms=4)
        for arm, column in ((arm_a, "seed_spread_a"), (arm_b, "seed_spread_b")):
            colour, _, marker = styles[arm]
            ax.plot(mine["epoch"], mine[column], color=colour, ls="--", lw=1.6, marker=marker, ms=4)
        ax.set(title=f"{label}: mean absolute difference", xlabel="epoch")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    seeds = int(rows["n_seeds"].max())
    handles = [
        Line2D([], [], color="black", lw=2.2, marker="o", label=f"{arm_a} vs {arm_b}, same seed"),
        *[
            Line2D([], [], color=styles[arm][0], ls="--", lw=1.6, marker=styles[arm][2], label=f"{arm}: seed vs seed")
            for arm in (arm_a, arm_b)
        ],
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"{title}: framework noise vs seed noise ({seeds} seeds)")
    return fig


def plot_divergence(table: pd.DataFrame, out: Path) -> list[Path]:
    """divergence_<dataset>_<model>_<precision>_<protocol>[_<variant>]_<a>_<b>.png per comparison."""
    paths = []
    for group, rows in table.groupby([*GROUP, "arm_a", "arm_b"], sort=True):
        name = "divergence_" + _file_stem(group) + ".png"
        # the title names the GROUP fields only: the group's trailing arm_a, arm_b are left out
        paths.append(_save(divergence_figure(rows, _title(dict(zip(GROUP, group, strict=False)))), out / name))
    return paths


def plot_all(
    sweep_curves: pd.DataFrame,
    results: pd.DataFrame,
    stats: pd.DataFrame,
    pairs: pd.DataFrame,
    out: Path,
    divergence: pd.DataFrame | None = None,
) -> list[Path]:
    """Every figure of the report into `out`, in seaborn's whitegrid style."""
    out.mkdir(parents=True, exist_ok=True)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        paths = plot_curves(sweep_curves, results, out) + plot_bars(results, out) + plot_diffs(pairs, stats, out)
        paths += plot_margins(stats, out)
        if divergence is not None and not divergence.empty:
            paths += plot_divergence(divergence, out)
        return paths
