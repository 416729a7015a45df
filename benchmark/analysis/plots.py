"""The report's figures: training curves, comparison bars, paired differences.

Drawn with seaborn on matplotlib ``Figure`` objects rendered by the Agg canvas,
never through pyplot: no global backend switch, no open-figure registry to leak, so
the report can be built on a headless node or from a running notebook. Only
completed runs are drawn, the same runs that enter the statistics. Keras and PyTorch
keep one colour each in every figure (Okabe-Ito, colour-blind safe). Runs of one
framework in different execution modes (eager, torch.compile, tf.function, XLA) are
never averaged together: where a sweep has several, each mode is its own arm, drawn
in a second shade of its framework's colour and named "pytorch (torch.compile)".
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.analysis.stats import COMPARED_METRICS, GROUP

# each framework's colour first, then further shades for further execution modes
SHADES = {"keras": ("#D55E00", "#E69F00", "#CC79A7"), "pytorch": ("#0072B2", "#56B4E9", "#009E73")}
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
    """"5 seeds", or "3–5 seeds" where comparisons have different numbers of seeds."""
    low, high = int(counts.min()), int(counts.max())
    return f"{high} seed{'s' if high != 1 else ''}" if low == high else f"{low}–{high} seeds"


def with_arms(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus an "arm" column: the framework, or "framework (mode)" where the frame
    holds runs of that framework in more than one execution mode."""
    modes = frame["execution_mode"].fillna("unknown")
    several = modes.groupby(frame["framework"]).transform("nunique") > 1
    return frame.assign(arm=frame["framework"].where(~several, frame["framework"] + " (" + modes + ")"))


def arm_palette(frame: pd.DataFrame) -> dict[str, str]:
    """Each arm's colour: its framework's, in a further shade for each further mode."""
    palette = {}
    for framework, arms in frame.groupby("framework")["arm"]:
        shades = SHADES.get(framework, ("grey",))
        palette.update({arm: shades[i % len(shades)] for i, arm in enumerate(sorted(arms.unique()))})
    return palette


def _arm_legend(fig: Figure, palette: dict[str, str], seeds: str) -> None:
    handles = [Line2D([], [], color=color, lw=2.2, label=f"{arm} (mean over {seeds})") for arm, color in palette.items()]
    handles.append(Line2D([], [], color="grey", lw=0.7, alpha=0.6, label="one seed"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False)


# ------------------------------------------------------------------ curves


def curves_figure(curves: pd.DataFrame, title: str) -> Figure:
    """Four panels against epoch: each seed a thin line, each arm's mean bold (`curves`
    carries the "arm" column of with_arms).

    Drawn with Axes.plot on an epoch × run table (one call per framework and panel)
    rather than one seaborn call per layer: 18 such figures otherwise dominate the
    report's build time."""
    palette = arm_palette(curves)
    fig = Figure(figsize=(11, 7.5))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.91, bottom=0.12, hspace=0.3, wspace=0.18)
    for ax, (column, label) in zip(fig.subplots(2, 2).ravel(), CURVE_PANELS):
        for arm, runs in curves.groupby("arm"):
            wide = runs.pivot(index="epoch", columns="run_dir", values=column)
            color = palette[arm]
            ax.plot(wide.index, wide.to_numpy(), color=color, lw=0.6, alpha=0.35)
            ax.plot(wide.index, wide.mean(axis=1).to_numpy(), color=color, lw=2.2)
        ax.set(title=label, xlabel="epoch")
    seeds = curves.groupby("arm")["run_dir"].nunique()
    _arm_legend(fig, palette, _seeds_text(seeds))
    fig.suptitle(title)
    return fig


def plot_curves(curves: pd.DataFrame, results: pd.DataFrame, out: Path) -> list[Path]:
    """curves_<dataset>_<model>_<precision>.png for every comparison with completed runs."""
    done = curves[curves["state"] == "completed"].merge(results[["run_dir", "execution_mode"]], on="run_dir",
                                                        how="left")
    paths = []
    for group, runs in done.groupby(list(GROUP), sort=True):
        name = "curves_" + "_".join(_safe(g) for g in group) + ".png"
        paths.append(_save(curves_figure(with_arms(runs), " / ".join(group)), out / name))
    return paths


# ------------------------------------------------------------------ bars


def bars_figure(runs: pd.DataFrame, column: str, label: str, scale: float, title: str) -> Figure:
    """Mean per arm and dataset-model, error bars = std over seeds."""
    data = with_arms(runs).assign(value=runs[column] * scale, comparison=runs["dataset"] + "\n" + runs["model"])
    order = sorted(data["comparison"].unique())
    palette = arm_palette(data)
    fig = Figure(figsize=(max(6.0, 1.2 * len(order) + 2), 4.8), layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=data, x="comparison", y="value", hue="arm", order=order, hue_order=list(palette),
                palette=palette, errorbar="sd", capsize=0.15, err_kws={"linewidth": 1.0}, ax=ax)
    seeds = data.groupby(["comparison", "arm"])["seed"].nunique()
    ax.set(xlabel="", ylabel=label, title=f"{title}: mean ± std over {_seeds_text(seeds)}")
    ax.legend(title="", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the bars
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
    """"dataset / model / precision", plus "[keras mode vs pytorch mode]" where one
    comparison was made in several execution modes."""
    label = frame[list(GROUP)].agg(" / ".join, axis=1)
    modes = frame["keras_mode"].fillna("?") + " vs " + frame["pytorch_mode"].fillna("?")
    several = modes.groupby(label).transform("nunique") > 1
    return label.where(~several, label + " [" + modes + "]")


def diff_figure(pairs: pd.DataFrame, stats: pd.DataFrame, metric_name: str) -> Figure:
    """Per comparison: each seed's Δ as a point, the mean Δ with its bootstrap CI."""
    metric = COMPARED_METRICS[metric_name]
    stats = stats[stats["n_pairs"] > 0].assign(label=lambda s: _diff_labels(s))
    pairs = pairs.assign(label=_diff_labels(pairs), value=pairs["diff"] * metric.scale)
    order = list(stats["label"])
    fig = Figure(figsize=(8, 1.2 + 0.32 * len(order)), layout="constrained")
    ax = fig.subplots()
    sns.stripplot(data=pairs, x="value", y="label", order=order, color="0.55", size=4, jitter=0.15, ax=ax)
    delta = stats["delta"].to_numpy() * metric.scale
    error = [delta - stats["ci_low"].to_numpy() * metric.scale, stats["ci_high"].to_numpy() * metric.scale - delta]
    ax.errorbar(delta, range(len(order)), xerr=error, fmt="D", color="black", ms=5, capsize=3, lw=1.2,
                label="mean Δ, 95% bootstrap CI")
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set(xlabel=f"Δ = PyTorch − Keras ({metric.unit})", ylabel="", title=f"Paired differences: {metric.label}")
    fig.legend(handles=[*ax.get_legend_handles_labels()[0],
                        Line2D([], [], ls="", marker="o", color="0.55", ms=4, label="one seed's Δ")],
               loc="outside lower center", ncol=2, frameon=False)
    return fig


def plot_diffs(pairs: pd.DataFrame, stats: pd.DataFrame, out: Path) -> list[Path]:
    """diff_<metric>.png for each compared metric with at least one pair."""
    paths = []
    for metric in COMPARED_METRICS:
        rows = stats[stats["metric"] == metric]
        if (rows["n_pairs"] > 0).any():
            fig = diff_figure(pairs[pairs["metric"] == metric], rows, metric)
            paths.append(_save(fig, out / f"diff_{_safe(metric)}.png"))
    return paths


def plot_all(sweep_curves: pd.DataFrame, results: pd.DataFrame, stats: pd.DataFrame, pairs: pd.DataFrame,
             out: Path) -> list[Path]:
    """Every figure of the report into `out`, in seaborn's whitegrid style."""
    out.mkdir(parents=True, exist_ok=True)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        return plot_curves(sweep_curves, results, out) + plot_bars(results, out) + plot_diffs(pairs, stats, out)
