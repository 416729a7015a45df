"""Write an audit's findings as Markdown and CSV, atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from benchmark.files import atomic_write_text


def summary_counts(findings) -> dict[str, int]:
    checks = [f for f in findings if f.kind == "check"]
    return {"checked": len(checks), "differ": sum(not f.same for f in checks), "info": len(findings) - len(checks)}


def to_csv(arms: list[str], findings) -> str:
    """category, item, one column per arm (named by it), same, impact, kind."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["category", "item", *arms, "same", "impact", "kind"])
    for f in findings:
        writer.writerow([f.category, f.item, *f.values, str(bool(f.same)).lower(), f.impact, f.kind])
    return buf.getvalue()


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(arms: list[str], findings, header: dict, intros: dict, categories) -> str:
    counts = summary_counts(findings)
    lines = [
        f"# Parity audit: {header['model']} on {header['dataset'].split(' ')[0]}",
        "",
        f"**{counts['checked']} items checked, {counts['differ']} differ** "
        f"(plus {counts['info']} informational rows on settings not in effect).",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in header.items()] + [""]
    differ = [f for f in findings if f.kind == "check" and not f.same]
    if differ:
        lines += ["## Differences at a glance", ""]
        for f in differ:
            values = "; ".join(f"{arm} {value}" for arm, value in zip(arms, f.values, strict=True))
            lines.append(f"- **{f.category}: {f.item}**: {values}. {f.impact}")
        lines.append("")
    for category in categories:
        rows = [f for f in findings if f.category == category]
        if not rows:
            continue
        n_diff = sum(not f.same for f in rows if f.kind == "check")
        lines += [
            f"## {category}",
            "",
            intros.get(category, ""),
            "",
            f"{len(rows)} rows, {n_diff} differ.",
            "",
            "| item | " + " | ".join(arms) + " | same | impact |",
            "|---|" + "---|" * len(arms) + "---|---|",
        ]
        for f in rows:
            same = ("yes" if f.same else "**no**") + (" (info)" if f.kind == "info" else "")
            lines.append(
                f"| {_cell(f.item)} | " + " | ".join(_cell(v) for v in f.values) + f" | {same} | {_cell(f.impact)} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_reports(
    arms: list[str], findings, out_dir: Path, model: str, dataset: str, header: dict, intros: dict, categories
) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    stem = f"parity_{model}_{dataset}"
    md, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    atomic_write_text(md, to_markdown(arms, findings, header, intros, categories))
    atomic_write_text(csv_path, to_csv(arms, findings))
    return md, csv_path
