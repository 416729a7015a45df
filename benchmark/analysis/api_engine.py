"""API effect or engine effect: what each comparison between two arms isolates.

An arm is a framework on an engine (benchmark.spec.runkey.arm_name; an engine is named in
the arm unless it is the framework's default). Two arms on the same engine with
different frameworks differ only in the API and its model zoo: their Δ is the **API
effect**. Two arms of the same framework on different engines run the same framework
code on other kernels: their Δ is an **engine effect**. Arms that differ in both
measure the two together. Two arms of one framework on one engine that differ in their
execution mode (the run key's execution field: eager against compiled, graph against
XLA) measure the **execution effect**; an execution mode is part of its engine, so it adds
nothing to an engine effect, and an API effect with two modes is "api+execution". The
statistics themselves are statistical_results.csv's; this only labels them and says them
in words. Framework and engine names come from
the results (the runs' summary.json), never from here.
"""

from __future__ import annotations

import pandas as pd

from benchmark.analysis.stats import GROUP, arm_names, metric_for
from benchmark.analysis.summary import delta_with_ci, significance_clause

API_ENGINE_COLUMNS = (
    *GROUP,
    "metric",
    "effect",
    "arm_a",
    "arm_b",
    "mode_a",  # the execution modes: one arm pair may be compared in several combinations
    "mode_b",
    "framework_a",
    "engine_a",
    "framework_b",
    "engine_b",
    "execution_a",  # the arms' execution modes (the run key's field)
    "execution_b",
    "n_pairs",
    "delta",
    "ci_low",
    "ci_high",
    "wilcoxon_p",
    "holm_p",
    "verdict",
    "sentence",
)
# the metrics the report says in words (the CSV has every compared metric)
SAID = ("test_accuracy", "images_per_sec_avg")


# the effects that one comparison isolates, in the order the report says them
ISOLATED = ("api", "engine", "execution")


def arm_parts(results: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """arm name -> (framework, engine, execution mode) of the runs in `results`."""
    if results.empty or "engine" not in results:
        return {}
    runs = results.dropna(subset=["framework"]).assign(arm=lambda r: arm_names(r))
    if "execution" not in runs:
        runs = runs.assign(execution="")
    return {
        arm: (str(f), str(e), str(x) if pd.notna(x) else "")
        for arm, f, e, x in runs[["arm", "framework", "engine", "execution"]].drop_duplicates().itertuples(index=False)
        if pd.notna(e)
    }


def effect_of(a: tuple, b: tuple) -> str:
    """ "api" (same engine and execution mode), "engine" (same framework), "execution"
    (same framework and engine), "api+execution" (same engine) or "api+engine"."""
    same_execution = len(a) < 3 or len(b) < 3 or a[2] == b[2]
    if a[1] == b[1]:
        if a[0] == b[0]:
            return "execution"
        return "api" if same_execution else "api+execution"
    if a[0] == b[0]:
        return "engine"
    return "api+engine"


def _sentence(row) -> str:
    metric = metric_for(row["metric"])
    a, b = (
        f"{row['arm_a']} ({row['framework_a']} on {row['engine_a']})",
        f"{row['arm_b']} ({row['framework_b']} on {row['engine_b']})",
    )
    what = {
        "api": f"API effect (the same {row['engine_a']} engine, {row['framework_a']} vs {row['framework_b']} code "
        "and model zoo)",
        "engine": f"Engine effect (the same {row['framework_a']} code, {row['engine_a']} vs {row['engine_b']} "
        "under it)",
        "execution": f"Execution effect (the same {row['framework_a']} code on {row['engine_a']}, "
        f"{row['execution_a']} vs {row['execution_b']})",
        "api+execution": f"API and execution mode together (the same {row['engine_a']} engine, "
        f"{row['framework_a']} {row['execution_a']} vs {row['framework_b']} {row['execution_b']})",
        "api+engine": "API and engine together (both differ)",
    }[row["effect"]]
    if row["n_pairs"] == 0:
        return f"{what} on {metric.label}: no completed pair of {a} and {b}."
    return f"{what} on {metric.label}: {a} − {b} = {delta_with_ci(row)}; {significance_clause(row)}."


def api_engine_effects(stats: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison and metric of statistical_results.csv, labelled."""
    parts = arm_parts(results)
    rows = []
    for _, row in stats.iterrows():
        if row["arm_a"] not in parts or row["arm_b"] not in parts:
            continue
        (fa, ea, xa), (fb, eb, xb) = parts[row["arm_a"]], parts[row["arm_b"]]
        labelled = {
            **row.to_dict(),
            "effect": effect_of((fa, ea, xa), (fb, eb, xb)),
            "execution_a": xa,
            "execution_b": xb,
            "framework_a": fa,
            "engine_a": ea,
            "framework_b": fb,
            "engine_b": eb,
        }
        labelled["sentence"] = _sentence(labelled)
        rows.append(labelled)
    return pd.DataFrame(rows, columns=list(API_ENGINE_COLUMNS))


def api_engine_markdown(table: pd.DataFrame) -> str:
    """The report's "API or engine?" section: only where some pair of arms isolates one of
    the two (two frameworks on their default engines alone add nothing to the summary)."""
    table = table[table["n_pairs"] > 0]  # arm pairs without runs in a group (say, engines run under one protocol only)
    isolating = table[table["effect"].isin(ISOLATED)]
    if isolating.empty:
        return ""
    lines = [
        "## API or engine?",
        "",
        "Same engine, different framework: the API effect; same framework (the same framework code), different "
        "engine: the engine effect; same framework and engine, different execution mode: the execution effect. "
        "Δ = A − B, mean over paired seeds, 95% bootstrap CI; every metric is in "
        "api_engine.csv.",
        "",
    ]
    order = {"api": 0, "engine": 1, "execution": 2, "api+execution": 3, "api+engine": 4}
    shown = (
        table[table["metric"].isin(SAID)]
        .assign(_order=table["effect"].map(order))
        .sort_values(["metric", "_order"], kind="stable")
    )
    for scope, rows in shown.groupby(list(GROUP), sort=True):
        if not rows["effect"].isin(ISOLATED).any():
            continue  # nothing isolated in this group: the summary above already says it
        lines.append(f"**{' × '.join(str(v) for v in scope if str(v))}**")
        lines.append("")
        lines.extend(f"- {sentence}" for sentence in rows["sentence"])
        lines.append("")
    return "\n".join(lines).rstrip()
