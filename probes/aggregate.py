"""Results tables from the probe runs' ``metrics.json`` files (docs/results.md).

- ``summary.{csv,md,tex}``: every metric, wide: one row per (dataset, source), one column per
  ``{task}/{probe}/{metric}``, with the source's model, family, paradigm, timestep, layer and whether its
  weights are random; the Markdown adds per-paradigm averages.
- ``metrics.csv``: the same numbers tidy (one row per metric) with their intervals (:mod:`probes.tables`).
- ``headline.{md,tex,html}``: the paper's Table 1 per dataset and probe kind (:mod:`probes.tables`).
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from probes.paradigms import RANDOM_INIT_NOTE, marked
from probes.tables import (HTML_STYLE, PLUS_MINUS_NOTE, TIDY_COLUMNS, HeadlineTable, headline_tables, html_table,
                           latex, markdown, tidy_rows)
from probes.tasks import TASKS

SOURCE_COLUMNS = ("dataset", "source", "model", "family", "paradigm", "random_init", "timestep", "layer", "capture")


def load_records(probe_dirs: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    return [json.loads((Path(d) / "metrics.json").read_text()) for d in probe_dirs]


def metric_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    columns = {f"{r['task']}/{r['probe']}/{m}" for r in records for m in r["metrics"]}
    return sorted(columns)


def summary_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        row = rows.setdefault((record["dataset"], record["source"]),
                              {key: record.get(key) for key in SOURCE_COLUMNS})
        for metric, value in record["metrics"].items():
            row[f"{record['task']}/{record['probe']}/{metric}"] = value
    return [rows[key] for key in sorted(rows)]


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*SOURCE_COLUMNS, *columns])
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def _header(column: str) -> str:
    task, _, metric = column.split("/", 2)
    higher = TASKS[task].metrics.get(metric, True) if task in TASKS else True
    return column + (" ↑" if higher else " ↓")


def _source_label(row: dict[str, Any]) -> str:
    return marked(row["source"], bool(row.get("random_init")))


def paradigm_averages(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    averages = []
    for dataset, paradigm in sorted({(r["dataset"], r["paradigm"]) for r in rows}):
        members = [r for r in rows if r["dataset"] == dataset and r["paradigm"] == paradigm]
        average = {"dataset": dataset, "source": f"{paradigm} average ({len(members)})", "paradigm": paradigm}
        for column in columns:
            values = [r[column] for r in members if isinstance(r.get(column), float) and not math.isnan(r[column])]
            average[column] = sum(values) / len(values) if values else None
        averages.append(average)
    return averages


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = ["dataset", "source", "paradigm", *(_header(c) for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["dataset"], _source_label(row), row.get("paradigm", "")] + [_fmt(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def write_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> None:
    random_note = f"\n{RANDOM_INIT_NOTE}\n" if any(r.get("random_init") for r in rows) else ""
    text = ["# Probe results", "",
            "One row per (dataset, feature source); source = `model@timestep@Llayer`. ↑ higher is better, "
            "↓ lower is better. Fractions, not percentages.", random_note,
            markdown_table(rows, columns), "", "## Averages per paradigm", "",
            markdown_table(paradigm_averages(rows, columns), columns), ""]
    Path(path).write_text("\n".join(text))


def write_latex(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> None:
    def escape(text: str) -> str:
        return text.replace("_", r"\_").replace("@", r"@").replace("%", r"\%")

    lines = [r"\begin{tabular}{ll" + "r" * len(columns) + "}", r"\toprule",
             " & ".join(["dataset", "source", *(escape(_header(c)).replace("↓", r"$\downarrow$")
                                                 .replace("↑", r"$\uparrow$") for c in columns)]) + r" \\",
             r"\midrule"]
    for row in rows:
        cells = [escape(row["dataset"]), escape(_source_label(row)), *(_fmt(row.get(c)) for c in columns)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    Path(path).write_text("\n".join(lines))


def write_tidy_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """``metrics.csv``: :data:`probes.tables.TIDY_COLUMNS`, branches joined with ';'."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(TIDY_COLUMNS))
        writer.writeheader()
        writer.writerows({**row, "branches": ";".join(row["branches"])} for row in rows)


def write_headline(tables: Sequence[HeadlineTable], *, md_path: str, tex_path: str, html_path: str) -> None:
    intro = ["# Headline results", "",
             "Per dataset and probe kind, the paper's headline metrics. ↑ higher is better, ↓ lower is better; "
             "the best value of each column among non-calibration sources is in bold. " + PLUS_MINUS_NOTE,
             "Group averages are unweighted means over the group's sources (every layer and timestep).",
             RANDOM_INIT_NOTE if any(r.random_init for t in tables for _, g in t.groups for r in g) else "", ""]
    Path(md_path).write_text("\n".join(intro) + "\n" + "\n\n".join(markdown(t) for t in tables) + "\n")
    Path(tex_path).write_text("% Headline results (requires \\usepackage{booktabs}).\n"
                              + "\n".join(latex(t) for t in tables))
    Path(html_path).write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Headline results</title>"
        f"<style>{HTML_STYLE}</style></head><body>\n<p>{html.escape(PLUS_MINUS_NOTE)} Bold: the best value of "
        "each column among non-calibration sources. Group averages are unweighted means over the group's "
        "sources.</p>\n" + "\n".join(html_table(t) for t in tables) + "\n</body></html>\n")


def aggregate(probe_dirs: Iterable[str | os.PathLike], outputs: dict[str, str]) -> list[dict[str, Any]]:
    """Write every table of ``outputs`` (keys ``summary_csv``, ``summary_md``, ``summary_tex``, ``metrics``,
    ``headline_md``, ``headline_tex``, ``headline_html``); returns the tidy rows."""
    records = load_records(probe_dirs)
    rows, columns = summary_rows(records), metric_columns(records)
    write_csv(rows, columns, outputs["summary_csv"])
    write_markdown(rows, columns, outputs["summary_md"])
    write_latex(rows, columns, outputs["summary_tex"])
    tidy = tidy_rows(records)
    write_tidy_csv(tidy, outputs["metrics"])
    write_headline(headline_tables(tidy), md_path=outputs["headline_md"], tex_path=outputs["headline_tex"],
                   html_path=outputs["headline_html"])
    return tidy
