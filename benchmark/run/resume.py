"""Whether a run directory already holds this run: finished, resumable, or someone else's.

Sweeps name run directories by run key (benchmark.spec.runkey), so launching a sweep
again, or stage 2 into stage 1's directory, meets the runs that exist. A completed run
is skipped; an unfinished one resumes from its last checkpoint;
a directory holding the same key but other settings (say, other epochs) is refused
rather than silently mixed.
"""

from __future__ import annotations

import copy
from pathlib import Path

from omegaconf import OmegaConf

from benchmark import BenchmarkError, OtherRunError
from benchmark.files import read_json, redact_url
from benchmark.run.rundir import RunDir
from benchmark.spec.frameworks import RETIRED_OPTIONS, foreign_options
from benchmark.spec.runkey import RUN_KEY, dirname, key_of_config, key_of_record

# Settings that do not change what a run computes (and dataset.source, below).
NOT_COMPARED = ("hydra", "data_dir", "progress_updates", "analysis")


def comparable_config(cfg) -> dict:
    """The settings that define what a run computes (other backends' options left out)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)  # noqa: S101  narrows to_container's union: a DictConfig gives a dict
    framework = container["framework"]
    foreign = foreign_options(framework["name"])
    container["framework"] = {k: v for k, v in framework.items() if k not in foreign}
    # null and the engine's default mode are one run (the run key's value)
    container["framework"]["execution"] = key_of_config(cfg)["execution"]
    container["dataset"].pop("source", None)  # where the raw files are does not change the run
    if container["dataset"].get("url"):  # summary.json and the reports keep no credentials
        container["dataset"]["url"] = redact_url(container["dataset"]["url"])
    container["dataset"].pop("accuracy_targets", None)  # read by the analysis only
    return {k: v for k, v in container.items() if k not in NOT_COMPARED}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a} -> {b}")
    return diffs


def _without_legacy_settings(old: dict, new: dict, key: dict) -> dict:
    """`new` without the settings of key fields added after `old` was recorded: a field
    at its legacy value means the run is what older runs were (benchmark.spec.runkey), so
    the config node it lives in (``protocol``, or the leaf ``framework.engine``) is
    left out of the comparison when the old record has no such node."""
    new = copy.deepcopy(new)
    for field in RUN_KEY:
        if not field.at_legacy(key):
            continue
        old_node: object = old
        new_node: object = new
        for part in field.path.split("."):
            if not isinstance(old_node, dict) or not isinstance(new_node, dict):
                break
            if part not in old_node:
                new_node.pop(part, None)
                break
            old_node, new_node = old_node[part], new_node.get(part)
    return new


def _without_retired_options(run_dir: Path, old: dict) -> dict:
    """`old` (a summary's config) without the framework options since retired
    (benchmark.spec.frameworks.RETIRED_OPTIONS) at the value every run recorded: such a
    run ran in its engine's default execution mode. Another value is refused in one line."""
    framework = old.get("framework")
    if not isinstance(framework, dict) or not set(framework) & set(RETIRED_OPTIONS):
        return old
    for option, (default, execution) in RETIRED_OPTIONS.items():
        if option in framework and framework[option] != default:
            raise OtherRunError(
                f"{run_dir} holds a run recorded with framework.{option}={str(framework[option]).lower()}, "
                f"an option replaced by framework.execution (framework.execution={execution}, a run-key field "
                "with its own directory): it cannot be resumed or skipped as a run of today's config; "
                "launch into another directory or delete it"
            )
    kept = {k: v for k, v in framework.items() if k not in RETIRED_OPTIONS}
    return {**old, "framework": kept}


# Settings added to the schema after runs were recorded: (key, the value such a run had in
# effect on a CPU). The float32 policy did not exist: each framework ran its default,
# which on a CPU is true float32 (no TF32 units); on a GPU it was not one value, so a
# GPU run recorded without it is not taken for a run of today's config.
ADDED_SETTINGS = (("precision", "matmul", "ieee"),)


def _with_added_settings(run_dir: Path, old: dict) -> dict:
    """`old` (a summary's config) with the settings added since, where its run's device
    (env.json) makes their value certain."""
    missing = [(n, k, v) for n, k, v in ADDED_SETTINGS if isinstance(old.get(n), dict) and k not in old[n]]
    if not missing or (read_json(RunDir(run_dir).env) or {}).get("device") != "cpu":
        return old
    old = copy.deepcopy(old)
    for node, key, value in missing:
        old[node][key] = value
    return old


def check_same_run(run_dir: Path, cfg) -> None:
    """Refuse to continue or skip a run started with other settings."""
    summary = RunDir(run_dir).read_summary()
    if not summary:
        return
    held, wanted = key_of_record(summary), key_of_config(cfg)
    if held != wanted:  # another run's directory (a renamed or copied one): never train over it
        raise OtherRunError(
            f"{run_dir} holds the run {dirname(held)}, not {dirname(wanted)}; launch into "
            "another directory (hydra.sweep.dir=... or hydra.run.dir=...) or delete it"
        )
    if "config" not in summary:
        return
    old = _with_added_settings(run_dir, _without_retired_options(run_dir, summary["config"]))
    diffs = _differences(old, _without_legacy_settings(old, comparable_config(cfg), wanted))
    if diffs:
        shown = "; ".join(diffs[:3]) + ("; ..." if len(diffs) > 3 else "")
        raise OtherRunError(
            f"{run_dir} holds a run started with other settings ({shown}); "
            "launch into another directory (hydra.sweep.dir=... or hydra.run.dir=...) or delete it"
        )


def check_same_data(run_dir: Path, data) -> None:
    """Refuse to resume a run on other prepared data than it started on (e.g. a cache
    rebuilt from another source: other images order, other splits). A run without a
    last checkpoint starts from scratch anyway, so it may."""
    rd = RunDir(run_dir)
    started = (rd.read_summary() or {}).get("data_fingerprint")
    resumable = any(rd.checkpoints.glob("last*"))  # last.pt; Keras: last.json, last/
    if resumable and started and data.fingerprint and started != data.fingerprint:
        raise BenchmarkError(
            f"{run_dir} started on other {data.name} data (fingerprint {started}) than the cache now holds "
            f"({data.fingerprint}, from {data.source}); resume it with the data it started on, or launch into "
            "another directory"
        )


def completed_result(run_dir: Path, cfg) -> dict | None:
    """test.json of a completed run of this config in `run_dir`, else None."""
    rd = RunDir(run_dir)
    status = rd.read_status()
    if not status or status.get("state") != "completed" or not rd.test.is_file():
        return None
    check_same_run(run_dir, cfg)
    return rd.read_test()
