"""environment.txt: the software and hardware the runs used, and the runs that differ.

A difference between two arms means something only if every run of an arm used the
same framework build, and all runs the same GPU, driver, CPU, Python and code. So the
report lists the majority value of each field, groups identical environments, and
flags every run that differs from the majority: shared fields (hardware, driver,
Python, git commit) against all runs, every other field a backend records (its
library versions, CUDA, cuDNN — each framework ships its own) against the runs of the
same arm. Host names and kernel builds are listed but not flagged: the nodes of one
cluster legitimately differ in both; nor are the fields that differ by design from
run to run (job id, device count).
"""

from __future__ import annotations

import pandas as pd

from benchmark.analysis.stats import arm_names

SHARED_FIELDS = {
    "gpu_name": "GPU",
    "gpu_driver": "GPU driver",
    "cpu_model": "CPU",
    # the instruction sets and kernel libraries behind the CPU arithmetic: a seed gives
    # other numbers on another CPU generation
    "cpu_features": "CPU features",
    "numpy_blas": "NumPy BLAS",
    "python": "Python",
    "git_commit": "git commit",
    "packages_sha256": "package set",  # benchmark.run.host.packages_digest; what differs is named
}
LISTED_FIELDS = ("hostname", "platform")
# recorded per run and different by design, or already the arm: never compared
NOT_COMPARED = {
    "slurm_job_id",
    "cpu_count",
    "gpu_count",
    "device",
    "framework",
    "hostname",
    "platform",
    "packages",
    "engines_loaded",
}
MISSING = "(not recorded)"


def _value(env: dict, field: str) -> str:
    value = env.get(field, MISSING)
    return "none" if value is None else str(value)


def _arm_fields(runs: pd.DataFrame) -> dict:
    """The fields the runs of one arm recorded besides the shared ones (its backend's)."""
    fields = sorted(
        c
        for c in runs.columns
        if c not in ("run_dir", "arm")
        and c not in SHARED_FIELDS
        and c not in NOT_COMPARED
        and (runs[c] != MISSING).any()
    )
    return {field: field for field in fields}


def environment_table(environments: dict[str, dict | None], results: pd.DataFrame) -> pd.DataFrame:
    """One row per run that has an env.json: run_dir, arm and every field as text."""
    arms = dict(zip(results["run_dir"], arm_names(results.fillna({"framework": "unknown"})), strict=True))
    present = [env for env in environments.values() if env is not None]
    fields = {*SHARED_FIELDS, *LISTED_FIELDS, *(f for env in present for f in env if f not in NOT_COMPARED)}
    rows = [
        {
            "run_dir": run_dir,
            "arm": arms.get(run_dir) or "unknown",
            **{field: _value(env, field) for field in sorted(fields)},
        }
        for run_dir, env in environments.items()
        if env is not None
    ]
    return pd.DataFrame(rows, columns=["run_dir", "arm", *sorted(fields)])


def _counted(values: pd.Series) -> str:
    """ "A40" when all agree, else every value with its count, most frequent first."""
    counts = values.value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{value} ({count} run{'s' if count != 1 else ''})" for value, count in counts.items())


def _field_lines(table: pd.DataFrame, fields: dict) -> list[str]:
    return [f"  {label:<14} {_counted(table[field])}" for field, label in fields.items()]


def package_changes(mine: dict | None, majority: dict | None) -> str:
    """ "numpy 1.26.4 -> 2.0.0, +extra 1.0, -gone 2.1" between two recorded package sets."""
    if not isinstance(mine, dict) or not isinstance(majority, dict):
        return "(package list not recorded)"
    changes = [
        f"{name} {majority[name]} -> {mine[name]}"
        for name in sorted(set(mine) & set(majority))
        if mine[name] != majority[name]
    ]
    changes += [f"+{name} {mine[name]}" for name in sorted(set(mine) - set(majority))]
    changes += [f"-{name} {majority[name]}" for name in sorted(set(majority) - set(mine))]
    return ", ".join(changes) or "same packages"


def feature_changes(mine: str, majority: str) -> str:
    """ "lacks avx512f; has amx_tile" between two cpu_features strings."""
    a, b = set(mine.split()), set(majority.split())
    parts = [f"lacks {' '.join(sorted(b - a))}" if b - a else "", f"has {' '.join(sorted(a - b))}" if a - b else ""]
    return "; ".join(p for p in parts if p) or "same features"


def deviations(table: pd.DataFrame, environments: dict[str, dict | None] | None = None) -> list[str]:
    """ "<run_dir>: <field> 2.4.0 (majority 2.3.1)" for every field where a run is off the
    majority; for the package set and the CPU features, what differs."""
    lines = []
    environments = environments or {}
    scopes = [(table, SHARED_FIELDS)] + [(runs, _arm_fields(runs)) for _, runs in table.groupby("arm", sort=True)]
    for runs, fields in scopes:
        for field, label in fields.items():
            majority = runs[field].mode().iloc[0]
            exemplar = runs.loc[runs[field] == majority, "run_dir"].iloc[0]
            for run_dir, value in runs.loc[runs[field] != majority, ["run_dir", field]].itertuples(index=False):
                if field == "packages_sha256":
                    changes = package_changes(
                        (environments.get(run_dir) or {}).get("packages"),
                        (environments.get(exemplar) or {}).get("packages"),
                    )
                    lines.append(f"  {run_dir}: {label} {value} (majority {majority}): {changes}")
                elif field == "cpu_features" and MISSING not in (value, majority):
                    lines.append(f"  {run_dir}: {label} {feature_changes(value, majority)} (than the majority)")
                else:
                    lines.append(f"  {run_dir}: {label} {value} (majority {majority})")
    return sorted(lines)


def distinct_environments(table: pd.DataFrame) -> list[str]:
    """Identical environments grouped (all flagged fields equal), largest group first."""
    lines = []
    for arm, runs in table.groupby("arm", sort=True):
        fields = {**SHARED_FIELDS, **_arm_fields(runs)}
        groups = runs.groupby(list(fields), sort=False).size().sort_values(ascending=False)
        for values, count in groups.items():
            described = ", ".join(f"{label} {value}" for label, value in zip(fields.values(), values, strict=True))
            lines.append(f"  {count} {arm} run{'s' if count != 1 else ''}: {described}")
    return lines


def environment_report(environments: dict[str, dict | None], results: pd.DataFrame, title: str) -> str:
    """The text of environment.txt."""
    table = environment_table(environments, results)
    lines = [f"Environment of the runs in {title} (from each run's env.json)", ""]
    if table.empty:
        return "\n".join(lines + ["No run has an env.json.", ""])
    lines += [f"All runs ({len(table)} with env.json)"] + _field_lines(table, SHARED_FIELDS)
    hosts = sorted(table["hostname"].unique())
    lines += [
        f"  {'hosts':<14} {len(hosts)}: {', '.join(hosts)}",
        f"  {'platform':<14} {_counted(table['platform'])}",
        "",
    ]
    for arm, runs in table.groupby("arm", sort=True):
        lines += [f"{arm} ({len(runs)} runs)"] + _field_lines(runs, _arm_fields(runs)) + [""]
    lines += ["Distinct environments (runs with identical software and hardware grouped)"]
    lines += distinct_environments(table) + [""]
    lines += ["Runs that differ from the majority"] + (deviations(table, environments) or ["  none"]) + [""]
    missing = sorted(run_dir for run_dir, env in environments.items() if env is None)
    if missing:
        lines += ["Runs without env.json"] + [f"  {run_dir}" for run_dir in missing] + [""]
    return "\n".join(lines)
