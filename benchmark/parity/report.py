"""Write an audit's findings as Markdown and CSV, atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from benchmark.rundir import atomic_write_text

COLUMNS = ("category", "item", "pytorch", "keras", "same", "impact", "kind")


def summary_counts(findings) -> dict[str, int]:
    checks = [f for f in findings if f.kind == "check"]
    return {
        "checked": len(checks),
        "differ": sum(not f.same for f in checks),
        "info": len(findings) - len(checks),
    }


def to_csv(findings) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for f in findings:
        writer.writerow([f.category, f.item, f.pytorch, f.keras, str(bool(f.same)).lower(), f.impact, f.kind])
    return buf.getvalue()


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(findings, header: dict, intros: dict, categories) -> str:
    counts = summary_counts(findings)
    title = f"# Parity audit: {header['model']} on {header['dataset'].split(' ')[0]}"
    lines = [title, ""]
    lines.append(f"**{counts['checked']} items checked, {counts['differ']} differ** "
                 f"(plus {counts['info']} informational rows on settings not in effect).")
    lines.append("")
    for key, value in header.items():
        lines.append(f"- {key}: {value}")
    lines.append("")
    differ = [f for f in findings if f.kind == "check" and not f.same]
    if differ:
        lines.append("## Differences at a glance")
        lines.append("")
        for f in differ:
            lines.append(f"- **{f.category}: {f.item}**: PyTorch {f.pytorch}; Keras {f.keras}. {f.impact}")
        lines.append("")
    for category in categories:
        rows = [f for f in findings if f.category == category]
        if not rows:
            continue
        n_diff = sum(not f.same for f in rows if f.kind == "check")
        lines.append(f"## {category}")
        lines.append("")
        lines.append(intros.get(category, ""))
        lines.append("")
        lines.append(f"{len(rows)} rows, {n_diff} differ.")
        lines.append("")
        lines.append("| item | PyTorch | Keras | same | impact |")
        lines.append("|---|---|---|---|---|")
        for f in rows:
            same = "yes" if f.same else "**no**"
            if f.kind == "info":
                same += " (info)"
            lines.append(f"| {_cell(f.item)} | {_cell(f.pytorch)} | {_cell(f.keras)} | {same} | {_cell(f.impact)} |")
        lines.append("")
    return "\n".join(lines)


def write_reports(findings, out_dir: Path, model: str, dataset: str, header: dict, intros: dict,
                  categories) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    stem = f"parity_{model}_{dataset}"
    md, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    atomic_write_text(md, to_markdown(findings, header, intros, categories))
    atomic_write_text(csv_path, to_csv(findings))
    return md, csv_path
