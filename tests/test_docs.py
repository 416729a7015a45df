"""The documentation cannot rot silently.

Three checks over the README and docs/, in-process and in seconds (no training, no
subprocess):

1. every relative link (`[x](path)`, `[x](path#anchor)`) names a file that exists and,
   into a Markdown file, a heading that exists (GitHub's anchor rules);
2. every `docs/<page>.md §N` (or §N.M) cited anywhere in the repository's text names a
   numbered heading of that page (`## 7. Degenerate cases`), and so does every bare §N
   inside a docs page (it cites its own page);
3. every training command of a bash block (`python -m benchmark ...`, `.venv/bin/benchmark
   ...`) composes against the real config, as Hydra would compose it: its overrides, and
   for `--multirun` the jobs of its sweep (the preset's `hydra.sweeper.params` and the
   command line's sweeps, expanded by Hydra's own parser and basic sweeper), each job
   also passing the checks a run makes before any work (`benchmark.run.loop.validate`);
   and every `python -m benchmark.<tool>` names a module that runs with `-m`.

Each checker is a function that returns the problems it finds; the tests at the end feed
each one a small bad input, so none of them can pass by finding nothing.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO, compose

README = REPO / "README.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
MARKDOWN = [README, *DOC_PAGES]
# the repository's own text, where `docs/<page>.md §N` citations live
CITING = (
    "README.md",
    "docs/*.md",
    "benchmark/**/*.py",
    "hydra_plugins/**/*.py",
    "conf/**/*.yaml",
    "tests/*.py",
    "notebooks/*.ipynb",
    "scripts/*",
    ".ci/*",
)
THIS_FILE = Path(__file__).resolve()
README_MAX_LINES = 200
MARKERS = ("main-command", "test-command", "fast-test-command")

# ------------------------------------------------------------------ Markdown structure

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
SHELL_INFO = {"bash", "sh", "shell", "console", "zsh"}


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number of the first line inside, info string, lines) of every fenced code block."""
    blocks: list[tuple[int, str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.group(1), opening.group(2).lower()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j])
            j += 1
        blocks.append((i + 2, info, body))
        i = j + 1
    return blocks


def without_fences(text: str) -> str:
    """`text` with its fenced code blocks blanked out (line numbers kept)."""
    lines = text.splitlines()
    for start, _, body in fenced_blocks(text):
        for k in range(start - 2, min(start + len(body), len(lines))):  # the fences and the body
            lines[k] = ""
    return "\n".join(lines)


def prose(text: str) -> str:
    """`text` without code, fenced or inline (line numbers kept): only real links are left."""
    return re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), without_fences(text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text, lower case, without
    punctuation other than '-' and '_', each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def headings(text: str) -> list[str]:
    """The ATX headings outside code, in order, as written."""
    pattern = r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$"
    return [m.group(1) for m in re.finditer(pattern, without_fences(text), re.MULTILINE)]


def anchors(text: str) -> set[str]:
    """Every heading's anchor, repeated slugs numbered -1, -2 ... as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(text):
        slug = github_slug(heading)
        if slug in seen:
            seen[slug] += 1
            out.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            out.add(slug)
    return out


def section_numbers(text: str) -> set[str]:
    """The numbers of a page's numbered headings: "## 7. Degenerate cases" -> "7",
    "### 7.2 ..." -> "7.2", "## §7 ..." -> "7"."""
    numbers = set()
    for heading in headings(text):
        m = re.match(r"(?:§\s?)?(\d+(?:\.\d+)*)\.?(?:\s|$)", heading)
        if m:
            numbers.add(m.group(1))
    return numbers


# ------------------------------------------------------------------ 1. links

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")


def link_problems(page: Path) -> list[str]:
    """Every relative link of a Markdown page that names no file, or no heading."""
    text = page.read_text()
    visible = prose(text)
    problems = []
    for pattern in (LINK, REFERENCE_DEFINITION):
        for m in pattern.finditer(visible):
            target = m.group(1)
            if EXTERNAL.match(target):
                continue
            line = visible.count("\n", 0, m.start()) + 1
            path_part, _, anchor = target.partition("#")
            where = (page.parent / path_part).resolve() if path_part else page
            if not where.exists():
                problems.append(f"{page.name}:{line}: {target}: no such file {where}")
                continue
            if anchor and where.suffix == ".md" and where.is_file() and anchor not in anchors(where.read_text()):
                problems.append(f"{page.name}:{line}: {target}: {where.name} has no heading with anchor #{anchor}")
    return problems


# ------------------------------------------------------------------ 2. § references

NUMBER = r"§\s?\d+(?:\.\d+)*"
# "docs/protocol.md §6", "docs/protocol.md` §10", "docs/protocol.md §5, §8", "[docs/analysis.md §7](...)"
CITATION = re.compile(rf"docs/(?P<page>[\w-]+)\.md`?\]?\s*(?P<refs>{NUMBER}(?:\s*(?:,|and|or|/)\s*{NUMBER})*)")
# "§4 of docs/protocol.md"
CITATION_BEFORE = re.compile(rf"(?P<refs>{NUMBER})\s+of\s+`?docs/(?P<page>[\w-]+)\.md")


def citations(text: str, own_page: str | None = None) -> list[tuple[int, str, str]]:
    """(line, page, section number) of every § citation in `text`; within a docs page
    (`own_page`), a bare §N cites that page."""
    found: list[tuple[int, str, str]] = []
    spans: list[tuple[int, int]] = []
    for pattern in (CITATION, CITATION_BEFORE):
        for m in pattern.finditer(text):
            spans.append(m.span())
            line = text.count("\n", 0, m.start()) + 1
            for number in re.findall(r"§\s?(\d+(?:\.\d+)*)", m.group("refs")):
                found.append((line, m.group("page"), number))
    if own_page is not None:
        for m in re.finditer(NUMBER, text):
            if not any(a <= m.start() < b for a, b in spans):
                number = re.sub(r"§\s?", "", m.group(0))
                found.append((text.count("\n", 0, m.start()) + 1, own_page, number))
    return found


def section_problems(path: Path, docs_dir: Path) -> list[str]:
    """Every § citation of a file that names a missing page or a section the page lacks."""
    text = path.read_text(errors="replace")
    own = path.stem if path.parent.resolve() == docs_dir.resolve() and path.suffix == ".md" else None
    problems = []
    for line, page, number in citations(text, own):
        target = docs_dir / f"{page}.md"
        if not target.is_file():
            problems.append(f"{path}:{line}: docs/{page}.md §{number}: no such page")
        elif number not in section_numbers(target.read_text()):
            problems.append(f"{path}:{line}: docs/{page}.md §{number}: the page has no heading numbered {number}")
    return problems


def citing_files() -> list[Path]:
    files = {p.resolve() for pattern in CITING for p in REPO.glob(pattern) if p.is_file()}
    return sorted(files - {THIS_FILE})


# ------------------------------------------------------------------ 3. commands

OPERATORS = {"&&", "||", ";", "|", "&", ";;", "|&"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
TRAINING = "benchmark"  # the training entry: python -m benchmark, the `benchmark` script


@dataclass(frozen=True)
class Command:
    where: str  # "README.md:42"
    module: str  # what runs: "benchmark", "benchmark.analyze", ...
    args: tuple[str, ...]  # what follows it
    script: str | None = None  # the console script it was launched by, if any

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.args)}"


def console_scripts() -> dict[str, str]:
    """[project.scripts] of pyproject.toml: script name -> module it runs."""
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    scripts: dict[str, str] = {}
    for m in re.finditer(r'^([\w.-]+)\s*=\s*"([\w.]+):\w+"', section.group(1) if section else "", re.MULTILINE):
        scripts[m.group(1)] = m.group(2)
    return scripts


def shell_lines(body: list[str], start: int) -> list[tuple[int, str]]:
    """(line number, logical line) of a shell block: continuations joined, prompts dropped."""
    out: list[tuple[int, str]] = []
    pending, first = "", start
    for offset, raw in enumerate(body):
        line = raw.rstrip()
        if not pending:
            first = start + offset
            line = re.sub(r"^\s*\$\s+", "", line)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((first, pending + line))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def simple_commands(line: str) -> list[list[str]]:
    """The words of each simple command of a shell line (split at ;, &&, ||, |, &)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = []
    words: list[str] = []
    for token in lexer:
        if token in OPERATORS:
            commands.append(words)
            words = []
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def benchmark_command(words: list[str], where: str, scripts: dict[str, str]) -> Command | None:
    """The command if it runs this project's code (python -m benchmark[.tool] or one of its
    console scripts), else None."""
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return None
    program = Path(words[0]).name
    if PYTHON.match(program):
        rest = words[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[1:]  # the interpreter's own flags (-u, -X ...)
        if len(rest) >= 2 and rest[0] == "-m" and (rest[1] == TRAINING or rest[1].startswith(TRAINING + ".")):
            return Command(where, rest[1], tuple(rest[2:]))
        return None
    if program in scripts:
        return Command(where, scripts[program], tuple(words[1:]), script=program)
    return None


def commands_in(text: str, name: str, scripts: dict[str, str] | None = None) -> list[Command]:
    """Every command of this project's code in the shell blocks of a Markdown text."""
    scripts = console_scripts() if scripts is None else scripts
    found: list[Command] = []
    for start, info, body in fenced_blocks(text):
        if info not in SHELL_INFO:
            continue
        for number, line in shell_lines(body, start):
            for words in simple_commands(line):
                command = benchmark_command(words, f"{name}:{number}", scripts)
                if command is not None:
                    found.append(command)
    return found


def training_entry(command: Command) -> bool:
    return command.module in (TRAINING, f"{TRAINING}.__main__", "benchmark.run.cli")


def module_problems(command: Command, root: Path = REPO) -> list[str]:
    """A tool command must name a module that `python -m` (or its console script) runs."""
    path = root / command.module.replace(".", "/")
    if command.script is not None:
        ok = path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
        return [] if ok else [f"{command}: the script {command.script} runs {command.module}, which does not exist"]
    if (path / "__main__.py").is_file():
        return []
    module = path.with_suffix(".py")
    if module.is_file() and re.search(r"""__name__\s*==\s*["']__main__["']""", module.read_text()):
        return []
    return [f"{command}: `python -m {command.module}` runs nothing (no module, __main__.py or __main__ guard)"]


def parity_problems(command: Command) -> list[str]:
    """A parity audit command's options and overrides, through the audit's own parser and
    composition (`benchmark.parity.configure.compose_config`: the real conf/, validated)."""
    if command.module != "benchmark.parity":
        return []
    from benchmark import BenchmarkError
    from benchmark.parity.__main__ import parse_args
    from benchmark.parity.configure import compose_config

    try:
        overrides, _, _ = parse_args(list(command.args))
        compose_config(overrides)
    except (BenchmarkError, SystemExit) as exc:
        return [f"{command}: {_one_line(exc)}"]
    return []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("Config search path")[0].split())
    return f"{type(exc).__name__}: {text[:300]}"


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of `--multirun OVERRIDES` as this benchmark's sweeper (Hydra's basic sweeper)
    expands them: the config's hydra.sweeper.params first, then the command line, the
    product over every sweep; only as many jobs as it takes to use every value once."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    # the master config, as Hydra composes it for a multirun: without the sweeps
    master = compose(*[o.input_line for o in parsed if not o.is_sweep_override()], return_hydra=True)
    params = [f"{key}={value}" for key, value in (master.hydra.sweeper.params or {}).items()]
    jobs = [
        job for batch in BasicSweeper.split_arguments(parser.parse_overrides(params + overrides), None) for job in batch
    ]
    chosen: list[list[str]] = []
    used: set[str] = set()
    for job in jobs:
        if not chosen or set(job) - used:
            chosen.append(job)
            used |= set(job)
    return chosen


def compose_problems(command: Command) -> list[str]:
    """The command's config, composed as Hydra composes it (each job of a sweep), must
    compose, resolve and pass the run's own checks."""
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_args(list(command.args))
    except SystemExit:
        return [f"{command}: Hydra's command line rejects it"]
    if args.shell_completion:
        return []  # its words are completion commands, not overrides
    if args.config_path or args.config_dir or (args.config_name not in (None, "config")):
        return [f"{command}: another config than conf/config.yaml; the docs should not need one"]
    try:
        jobs = sweep_jobs(args.overrides) if args.multirun else [args.overrides]
    except Exception as exc:  # Hydra's parser and composition errors
        return [f"{command}: {_one_line(exc)}"]
    problems = (job_problem(tuple(job)) for job in jobs)
    return [f"{command}: {problem}" for problem in problems if problem]


@functools.cache  # the docs repeat commands: each job is composed once per session
def job_problem(job: tuple[str, ...]) -> str | None:
    """Why one job's config would not run (composition, interpolation, a value the run
    refuses), or None."""
    from omegaconf import OmegaConf

    from benchmark.run.loop import validate

    try:
        cfg = compose(*job, return_hydra=True)
        OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        validate(cfg)
    except Exception as exc:  # whatever Hydra, OmegaConf or the checks raise
        return f"job {' '.join(job) or '(no overrides)'}: {_one_line(exc)}"
    return None


def all_commands() -> list[Command]:
    return [c for page in MARKDOWN for c in commands_in(page.read_text(), page.relative_to(REPO).as_posix())]


COMMANDS = all_commands()
TRAINING_COMMANDS = [c for c in COMMANDS if training_entry(c)]
TOOL_COMMANDS = [c for c in COMMANDS if not training_entry(c)]


# ------------------------------------------------------------------ the documentation as it is


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    assert link_problems(page) == []


def test_section_citations_resolve():
    problems = [p for path in citing_files() for p in section_problems(path, REPO / "docs")]
    assert problems == []


def test_commands_are_found():
    """The command checks below cannot pass vacuously: the README's own main job and
    more are found, and the tools too."""
    assert len(TRAINING_COMMANDS) >= 10, [str(c) for c in COMMANDS]
    main = [c for c in TRAINING_COMMANDS if c.where.startswith("README.md") and "experiment=quickstart" in c.args]
    assert main, "the README's main command (the quickstart sweep) was not found"
    assert any(c.where.startswith("docs/running.md") for c in TRAINING_COMMANDS)
    tools = {c.module for c in TOOL_COMMANDS}
    assert {"benchmark.analyze", "benchmark.status", "benchmark.parity", "benchmark.perf"} <= tools, tools


@pytest.mark.parametrize("command", TRAINING_COMMANDS, ids=lambda c: c.where)
def test_training_command_composes(command):
    assert compose_problems(command) == []


@pytest.mark.parametrize("command", TOOL_COMMANDS, ids=lambda c: f"{c.where}-{c.module}")
def test_tool_command_names_a_module(command):
    assert module_problems(command) == []
    assert parity_problems(command) == []


def test_readme_is_a_front_door():
    """At most README_MAX_LINES lines, and each command block the machinery reads once,
    between its markers, as one bash fence."""
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for marker in MARKERS:
        blocks = re.findall(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", text, re.DOTALL)
        assert len(blocks) == 1, marker
        fences = fenced_blocks(blocks[0])
        assert len(fences) == 1 and fences[0][1] == "bash" and any(line.strip() for line in fences[0][2]), marker


# ------------------------------------------------------------------ each check can fail


def test_slugs_follow_github():
    assert github_slug("7. Degenerate cases") == "7-degenerate-cases"
    assert github_slug("Harness against bare loop: `benchmark.perf`") == "harness-against-bare-loop-benchmarkperf"
    assert github_slug("Keras engines: API or engine?") == "keras-engines-api-or-engine"
    assert github_slug("A [linked](x.md) heading") == "a-linked-heading"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1", "a-2"}
    assert anchors("## Harness: `benchmark.perf`\n## 7. Degenerate cases #\n") == {
        "harness-benchmarkperf",
        "7-degenerate-cases",
    }


def test_link_check_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## 2. Real section\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n"
        "[ok](docs/other.md) [ok](docs/other.md#2-real-section) [ok](#title) [web](https://example.org/x)\n"
        "[gone](docs/missing.md) [bad anchor](docs/other.md#no-such-heading) [self](#nowhere)\n"
        "`[in code](docs/missing-too.md)`\n\n"
        "```\n[in a fence](docs/missing-three.md)\n```\n\n"
        "[ref]: docs/missing-four.md\n"
    )
    problems = link_problems(page)
    assert len(problems) == 4, problems
    assert [p for p in problems if "missing.md" in p] and [p for p in problems if "#no-such-heading" in p]
    assert [p for p in problems if "#nowhere" in p] and [p for p in problems if "missing-four.md" in p]


def test_section_check_finds_missing_sections(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "protocol.md").write_text("# P\n\n## 5. Five\n\n## 8. Eight\n\n### 8.1 Sub\n\nSee §5 and §9.\n")
    source = tmp_path / "module.py"
    source.write_text(
        '"""docs/protocol.md §5, §8 and docs/protocol.md` §8.1; §8 of docs/protocol.md.\n'
        'docs/protocol.md §6, §8.2; docs/nopage.md §1; [docs/protocol.md §7](x.md)"""\n'
    )
    problems = section_problems(source, docs)
    assert sorted(re.findall(r"§([\d.]+)", " ".join(problems))) == ["1", "6", "7", "8.2"], problems
    assert "no such page" in " ".join(problems)
    own = section_problems(docs / "protocol.md", docs)  # bare § in a docs page: its own sections
    assert len(own) == 1 and "§9" in own[0], own


def test_command_extraction():
    text = (
        "```bash\n"
        "python3 -m venv .venv && .venv/bin/python -m benchmark --multirun experiment=quickstart && cat x\n"
        "FOO=1 python -m benchmark seed=1 \\\n    model=resnet50   # a comment\n"
        ".venv/bin/benchmark-analyze multirun/x | tee log; python -m pytest -q\n"
        "$ python -m benchmark.status multirun/x\n"
        "```\n"
        "```python\npython -m benchmark seed=2\n```\n"
        "```\npython -m benchmark seed=3\n```\n"
    )
    found = commands_in(text, "T.md", {"benchmark-analyze": "benchmark.analysis.__main__"})
    assert [(c.where, c.module, c.args) for c in found] == [
        ("T.md:2", "benchmark", ("--multirun", "experiment=quickstart")),
        ("T.md:3", "benchmark", ("seed=1", "model=resnet50")),
        ("T.md:5", "benchmark.analysis.__main__", ("multirun/x",)),
        ("T.md:6", "benchmark.status", ("multirun/x",)),
    ]
    assert commands_in("```bash\nls\n```\n```python\npython -m benchmark\n```\n", "T.md") == []


def test_module_check_finds_missing_modules():
    assert module_problems(Command("T", "benchmark.analyze", ())) == []
    assert module_problems(Command("T", "benchmark.perf", ())) == []
    assert module_problems(Command("T", "benchmark.parity.params", ())) == []
    assert module_problems(Command("T", "benchmark.analyse", ()))  # misspelt
    assert module_problems(Command("T", "benchmark.spec", ()))  # a package without __main__
    assert module_problems(Command("T", "benchmark.spec.config", ()))  # a module without a main guard
    assert module_problems(Command("T", "benchmark.missing", (), script="benchmark-missing"))
    assert parity_problems(Command("T", "benchmark.parity", ("--arms", "pytorch,keras", "model=resnet50"))) == []
    assert parity_problems(Command("T", "benchmark.parity", ("model=resnet51",)))
    assert parity_problems(Command("T", "benchmark.parity", ("--arms", "pytorch,pytroch")))


@pytest.mark.parametrize(
    "args,why",
    [
        (("modle=resnet50",), "unknown key"),
        (("model=resnet51",), "unknown option"),
        (("seed=-1",), "out of range"),
        (("epochs=ten",), "wrong type"),
        (("seed=1,2",), "a sweep without --multirun"),
        (("--multirun", "framework=keras,pytroch"), "a bad value in a command-line sweep"),
        (("--multirun", "experiment=stage1", "seed=42,-5"), "a bad value in the last job only"),
        (("--multirun", "experiment=quickstrat"), "unknown preset"),
        (("--multirun", "experiment=quickstart", "optim.lr=0"), "a bad value in every job of a preset"),
        (("hydra/launcher=slurm_a41",), "unknown launcher"),
        (("--frobnicate",), "not a Hydra flag"),
    ],
)
def test_compose_check_finds_bad_commands(args, why):
    assert compose_problems(Command("T", "benchmark", args)), why


def test_compose_check_accepts_good_commands():
    for args in (
        (),
        ("--cfg", "job"),
        ("--help",),
        ("--multirun", "experiment=stage2"),
        ("-m", "seed=range(1,4)", "framework=keras,keras_jax"),
        ("--multirun", "experiment=stage1", "hydra/launcher=slurm_a40", "hydra.launcher.partition=gpu"),
        ("-sc", "install=bash"),
    ):
        assert compose_problems(Command("T", "benchmark", args)) == [], args


def test_sweep_expansion_uses_every_value():
    jobs = sweep_jobs(["experiment=stage2"])
    values = {override for job in jobs for override in job}
    assert {"dataset=tiny_imagenet", "model=convnext_tiny", "precision=amp", "seed=1024", "framework=keras"} <= values
    assert 1 < len(jobs) < 180  # a covering set of the 180 jobs, not all of them
