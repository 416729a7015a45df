"""The run key: the fields that identify a run, in order, defined here and nowhere else.

Everything that names, finds, skips, groups or pairs runs reads this tuple: the run
directory name (``${run_key:}`` in conf/config.yaml), the overrides that do not make a
run a variant (``${run_key_overrides:...}``), the skip/resume/refuse decision
(benchmark.run.resume), summary.json and results.csv, the statistics' grouping and
pairing, the plots and the sanity checks (benchmark.analysis).

Each field has a role (docs/protocol.md §10):

- ``arm``: what compared runs differ in (the framework, its engine and its execution
  mode; the mode the run recorded, ``execution_mode``, joins it in the analysis);
- ``group``: runs are only ever compared within one value (dataset, model, precision);
- ``pair``: the field that pairs runs across arms (the seed).

Adding an axis (a protocol, a Keras engine) is one more ``KeyField`` here. Its
``legacy`` value is what runs written before the field existed did: at that value the
field is left out of directory names (and arm names), so existing sweeps keep their
directories and are found, skipped and analysed as before. A legacy value may depend
on an earlier field (``legacy_by``): the engine's is each framework's default engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from omegaconf import OmegaConf

from benchmark.spec.frameworks import ENGINES, EXECUTIONS, default_engine


@dataclass(frozen=True)
class KeyField:
    name: str  # column of summary.json / results.csv
    path: str  # where the config holds the value ("framework.name")
    role: str  # "arm" | "group" | "pair"
    legacy: Any = None  # value of runs made before the field existed (None: the field always existed)
    prefix: str = ""  # written before the value in directory names ("seed" -> seed42)
    legacy_by: str | None = None  # an earlier field whose value picks the legacy value (legacy is then a mapping)

    def legacy_of(self, key: Mapping) -> Any:
        """The legacy value of this field for a run whose earlier fields are `key`."""
        if self.legacy_by is None:
            return self.legacy
        return self.legacy.get(key.get(self.legacy_by))

    def at_legacy(self, key: Mapping) -> bool:
        """Whether `key` holds this field at its legacy value (left out of names)."""
        legacy = self.legacy_of(key)
        return legacy is not None and key.get(self.name) == legacy

    @property
    def overrides(self) -> tuple[str, ...]:
        """Command-line keys that set this field (the config group and the value itself)."""
        group = self.path.split(".")[0]
        return tuple(dict.fromkeys((group, self.path)))


def _default_engines() -> dict:
    return {framework: default_engine(framework) for framework in ENGINES}


def _default_executions() -> dict:
    return {engine: modes[0] for engines in EXECUTIONS.values() for engine, modes in engines.items()}


RUN_KEY: tuple[KeyField, ...] = (
    KeyField("framework", "framework.name", "arm"),
    # what a framework computes on (Keras 3: TensorFlow, JAX or PyTorch); runs made
    # before engines existed ran on each framework's default (benchmark.spec.frameworks)
    KeyField("engine", "framework.engine", "arm", legacy=_default_engines(), legacy_by="framework"),
    # how the engine runs the steps (eager, torch.compile, tf.function, XLA, jax.jit:
    # benchmark.spec.frameworks.EXECUTIONS); runs made before the field existed ran in
    # their engine's default mode, which stays out of directory and arm names
    KeyField("execution", "framework.execution", "arm", legacy=_default_executions(), legacy_by="engine"),
    KeyField("dataset", "dataset.name", "group"),
    KeyField("model", "model.name", "group"),
    KeyField("precision", "precision.name", "group"),
    # docs/protocol.md §11: frameworks are compared within one protocol; runs made
    # before protocols existed are native, and native stays out of directory names
    KeyField("protocol", "protocol.name", "group", legacy="native"),
    KeyField("seed", "seed", "pair", prefix="seed"),
)
KEY: tuple[str, ...] = tuple(f.name for f in RUN_KEY)
# The fields every run has a value for (a field whose legacy value depends on another,
# the engine, has none for a framework without engines): a run lacking one cannot be placed.
REQUIRED_KEY: tuple[str, ...] = tuple(f.name for f in RUN_KEY if f.legacy_by is None)
ARM_FIELDS: tuple[str, ...] = tuple(f.name for f in RUN_KEY if f.role == "arm")
GROUP_FIELDS: tuple[str, ...] = tuple(f.name for f in RUN_KEY if f.role == "group")
PAIR_FIELD: str = next(f.name for f in RUN_KEY if f.role == "pair")
# Recorded by every run: the graph/compile mode a framework ran in, as the trainer
# names it (chosen by the execution field). Runs of different modes are never pooled.
MODE_FIELD = "execution_mode"
# Overrides of settings outside the key (epochs=3, batch_size=...) make a run a variant
# of its key, in a sub-directory named by those overrides; variants never pair with the
# protocol's runs or with each other ("" is the protocol run itself).
VARIANT_FIELD = "variant"
# The analysis groups comparisons by these (the variant included), pairs by PAIR_FIELD.
COMPARISON_FIELDS: tuple[str, ...] = (*GROUP_FIELDS, VARIANT_FIELD)


def _field_value(field: KeyField, value: Any, key: Mapping) -> Any:
    """`value` of `field` in a key whose earlier fields are `key` (legacy when missing)."""
    if value is None:
        return field.legacy_of(key)
    return int(value) if field.role == "pair" else value


def _key(values) -> dict:
    key: dict = {}
    for field, value in zip(RUN_KEY, values, strict=True):
        key[field.name] = _field_value(field, value, key)
    return key


def key_of_config(cfg) -> dict:
    """The run key of a composed config, in RUN_KEY order."""
    return _key(OmegaConf.select(cfg, f.path) for f in RUN_KEY)


def key_of_record(record: Mapping, fallback: Mapping | None = None) -> dict:
    """The run key from summary.json (or anything with the key's columns); a field it
    lacks comes from `fallback`, else is the field's legacy value."""
    fallback = fallback or {}
    return _key(record.get(f.name, fallback.get(f.name)) for f in RUN_KEY)


def key_of_saved_config(cfg: Mapping) -> dict:
    """The run key from `.hydra/config.yaml` read as plain YAML (a run that died before
    writing summary.json): the key fields are literal values there."""

    def value(path: str) -> Any:
        node: Any = cfg
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    return _key(value(f.path) for f in RUN_KEY)


def dirname(key: Mapping) -> str:
    """The run directory name of a key: framework[_engine]_dataset_model_precision[_protocol]_seedN. A field
    at its legacy value is left out, so runs made before it existed keep their names."""
    parts = [f"{f.prefix}{key[f.name]}" for f in RUN_KEY if key.get(f.name) is not None and not f.at_legacy(key)]
    return "_".join(parts)


def arm_name(key: Mapping) -> str:
    """The arm of a key (a config's, a summary's, a results row): its arm-field values
    joined by "/", a field after the first left out at its legacy value or when missing
    ("keras", "keras/jax", "pytorch"): arms named before a field existed keep their names."""
    first, *others = (f for f in RUN_KEY if f.role == "arm")
    parts = [str(key[first.name])]
    for field in others:
        value = key.get(field.name)
        if value is None or value != value or field.at_legacy(key):  # None / NaN: not recorded
            continue
        parts.append(str(value))
    return "/".join(parts)


def variant_of_path(run_dir: str, key: Mapping) -> str:
    """A run's variant from where it lies: the path below its key's directory (Hydra's
    override_dirname), "" for the key directory itself or any other layout."""
    parts = PurePosixPath(run_dir).parts
    name = dirname(key)
    if name in parts:
        return "/".join(parts[parts.index(name) + 1 :])
    return ""


def override_keys(*others: str) -> list[str]:
    """Overrides left out of a run's variant: the key's own, plus `others`."""
    return [key for f in RUN_KEY for key in f.overrides] + list(others)


def register_resolvers() -> None:
    """``${run_key:}`` and ``${run_key_overrides:a,b}`` for conf/config.yaml."""
    if not OmegaConf.has_resolver("run_key"):
        OmegaConf.register_new_resolver("run_key", lambda *, _root_: dirname(key_of_config(_root_)))
    if not OmegaConf.has_resolver("run_key_overrides"):
        OmegaConf.register_new_resolver("run_key_overrides", lambda *others: override_keys(*others))
