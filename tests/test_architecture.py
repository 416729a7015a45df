"""The package's layout is its architecture: layers stack, nothing imports in a circle.

Read from the source with ``ast`` (function-level imports included), so an import
hidden in a function cannot smuggle a cycle or an upward dependency past the test.
docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Bottom to top. A module may import its own layer and those below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("benchmark", "benchmark.files"),  # errors, atomic file writes
    ("benchmark.spec",),  # what a run is: schema, run key, knobs, schedule, models
    ("benchmark.data",),  # official sources -> cache -> splits, the shared stream
    ("benchmark.backends",),  # each framework behind the contracts
    ("benchmark.run",),  # one run: command line, epoch loop, run directory
    ("benchmark.analysis", "benchmark.parity", "benchmark.perf", "benchmark.preflight"),  # read runs, audit, time
    ("benchmark.sweep",),  # many runs: end-of-sweep report, status
    ("benchmark.__main__", "benchmark.analyze", "benchmark.status", "hydra_plugins"),  # entry points, plugins
)

# Packages a function may import lazily, and why: importing them at module level would
# load a framework (or its event/plot stack) into processes that must not have it.
HEAVY = {
    "torch",
    "torchvision",
    "tensorflow",
    "keras",
    "jax",
    "jaxlib",  # only the selected backend loads
    "matplotlib",
    "seaborn",
}  # drawing only when plots are asked for
LAZY_OK = HEAVY | {
    "tensorboard",  # its compat layer looks for TensorFlow
    "PIL",
    "pyarrow",
    "sklearn",  # a decoder only for the dataset that needs it
    "hydra",
    "omegaconf",
    "submitit",
    "cloudpickle",  # Hydra imports every plugin module at discovery
    "importlib",  # standard library, where a name is only needed on one path
}


def modules() -> dict[str, Path]:
    found = {}
    for top in ("benchmark", "hydra_plugins"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module of this package, line, inside a function) for every import."""
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(sub) for sub in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from pkg import sub` imports the submodule pkg.sub where one exists
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            found.append((target, node.lineno, id(node) in in_function))
    return found


def owner(target: str) -> str | None:
    """The module of this package that an imported name lives in (None: another package)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def loads_heavy(name: str, seen: frozenset = frozenset()) -> bool:
    """Whether importing module `name` loads a framework or plotting stack at module level."""
    for target, _, in_function in imports_of(name, MODULES[name]):
        if in_function:
            continue
        if target.split(".")[0] in HEAVY:
            return True
        inner = owner(target)
        if inner and inner not in seen and inner != name and loads_heavy(inner, seen | {name}):
            return True
    return False


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in imports_of(name, path):
            while target and target not in MODULES:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add(target)
    return edges


def layer_of(name: str) -> int:
    best, index = -1, None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    assert index is not None, f"{name} belongs to no layer: add its folder to LAYERS (and docs/architecture.md)"
    return index


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_import_runs_upward():
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_even_through_function_level_imports():
    assert strongly_connected(graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_function_level_imports_are_for_frameworks_and_say_why(name):
    """A function-level import is allowed where importing at module level would load a
    framework (or a decoder, plotter or plugin stack) into processes that must not have
    it; each says why in a comment on its line or above its block of imports."""
    path = MODULES[name]
    lines = path.read_text().splitlines()

    import_line = re.compile(r"^(import |from \S+ import |[\w.]+( as \w+)?,$|\)$)")

    def says_why(line: int) -> bool:
        """A comment (not just a noqa) on the import's line or in the run of import lines
        above it (isort sorts a block under one comment); the walk stops at anything that
        is not part of an import statement."""
        i = line - 1
        while i >= 0:
            text = lines[i].strip()
            comment = re.sub(r"^noqa(:\s*[A-Z0-9]+(,\s*[A-Z0-9]+)*)?", "", text.partition("#")[2].strip()).strip()
            if comment:  # a reason, not only a linter code
                return True
            code = text.partition("#")[0].strip()
            if not import_line.match(code):
                return False
            i -= 1
        return False

    problems = []
    for target, line, in_function in imports_of(name, path):
        if not in_function:
            continue
        top = target.split(".")[0]
        inner = owner(target)
        if top in LAZY_OK or (inner is not None and loads_heavy(inner)):
            if not says_why(line):
                problems.append(f"{path.relative_to(REPO)}:{line} imports {target} in a function without a comment why")
        elif top in ("benchmark",) and name.startswith("hydra_plugins"):
            if not says_why(line):
                problems.append(f"{path.relative_to(REPO)}:{line} imports {target} in a function without a comment why")
        else:
            problems.append(
                f"{path.relative_to(REPO)}:{line} imports {target} in a function: import it at module level"
            )
    assert problems == []
