"""Results tables from the probe runs' ``metrics.json`` records (docs/results.md).

- :func:`tidy_rows`: one row per (dataset, task, probe kind, source, metric) with its 95% bootstrap interval,
  seed spread, validation clips and seeds: ``results/tables/metrics.csv``, for pandas and for the plots.
- :func:`headline_tables`: per dataset and probe kind, a table shaped like the paper's Table 1: rows grouped
  by paradigm, each group followed by its average; the tasks' headline metrics as columns with ↑/↓; the best
  value of each column among non-calibration sources in bold; random-init sources marked. Rendered as
  Markdown, LaTeX (booktabs) and HTML (for the report).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extractors.ids import SourceId
from probes.paradigms import CALIBRATION, marked, paradigm, paradigm_rank
from probes.tasks import TASKS

TIDY_COLUMNS = ("dataset", "task", "probe", "source", "model", "family", "paradigm", "timestep", "layer",
                "capture", "random_init", "branches", "metric", "value", "ci_low", "ci_high", "seed_std", "seeds", "val_clips")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def tidy_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, task, probe, source, metric), sorted; numbers as floats (NaN when absent)."""
    rows = []
    for record in records:
        source = SourceId.parse(record["source"])
        for metric, value in record["metrics"].items():
            low, high = record.get("ci", {}).get(metric, (None, None))
            rows.append({
                "dataset": record["dataset"], "task": record["task"], "probe": record["probe"],
                "source": record["source"], "model": source.model, "family": record.get("family"),
                "paradigm": record.get("paradigm"), "timestep": source.timestep, "layer": source.layer,
                "capture": source.capture, "random_init": bool(record.get("random_init")), "branches": list(record.get("branches") or []),
                "metric": metric, "value": _number(value), "ci_low": _number(low), "ci_high": _number(high),
                "seed_std": _number(record.get("seed_std", {}).get(metric)), "seeds": len(record.get("seeds") or [0]),
                "val_clips": int(record.get("val_clips") or 0)})
    return sorted(rows, key=lambda r: (r["dataset"], r["task"], r["probe"], r["source"], r["metric"]))


# --- headline tables ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    task: str
    metric: str
    higher_is_better: bool
    percent: bool

    @property
    def title(self) -> str:
        return f"{self.metric}{' (%)' if self.percent else ''} {'↑' if self.higher_is_better else '↓'}"

    def shown(self, value: float) -> float:
        return value * 100 if self.percent else value

    @property
    def digits(self) -> int:
        return 1 if self.percent else 3


def headline_columns() -> list[Column]:
    """The registered tasks' headline metrics, task by task (the paper's eight for its three tasks)."""
    return [Column(task.name, metric, task.metrics[metric], metric in task.percent)
            for task in TASKS.values() for metric in task.headline]


@dataclass
class Cell:
    value: float
    ci: tuple[float, float] = (math.nan, math.nan)
    seed_std: float = math.nan
    seeds: int = 1
    best: bool = False


@dataclass
class Row:
    label: str  # source id, or the group average's label
    paradigm: str
    random_init: bool = False
    average: bool = False
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # (task, metric) -> cell


@dataclass
class HeadlineTable:
    dataset: str
    probe: str
    columns: list[Column]
    groups: list[tuple[str, list[Row]]]  # paradigm -> its source rows then its average row


def headline_tables(rows: Sequence[dict[str, Any]]) -> list[HeadlineTable]:
    """One table per (dataset, probe kind) present in the tidy ``rows``."""
    columns = headline_columns()
    wanted = {(c.task, c.metric) for c in columns}
    tables = []
    for dataset, probe in sorted({(r["dataset"], r["probe"]) for r in rows}):
        chosen = [r for r in rows if r["dataset"] == dataset and r["probe"] == probe
                  and (r["task"], r["metric"]) in wanted]
        present = [c for c in columns if any((r["task"], r["metric"]) == (c.task, c.metric) for r in chosen)]
        if present:
            tables.append(HeadlineTable(dataset, probe, present, _groups(chosen, present)))
    return tables


def _groups(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[tuple[str, list[Row]]]:
    by_source: dict[str, Row] = {}
    for r in rows:
        row = by_source.setdefault(r["source"], Row(r["source"], r["paradigm"] or "other", r["random_init"]))
        row.cells[(r["task"], r["metric"])] = Cell(r["value"], (r["ci_low"], r["ci_high"]), r["seed_std"], r["seeds"])
    _mark_best(list(by_source.values()), columns)
    groups = []
    for name in sorted({row.paradigm for row in by_source.values()}, key=paradigm_rank):
        members = sorted((row for row in by_source.values() if row.paradigm == name), key=lambda row: row.label)
        groups.append((name, [*members, _average(name, members, columns)]))
    return groups


def _mark_best(rows: Sequence[Row], columns: Sequence[Column]) -> None:
    for column in columns:
        key = (column.task, column.metric)
        candidates = [row.cells[key] for row in rows if row.paradigm not in CALIBRATION and key in row.cells
                      and math.isfinite(row.cells[key].value)]
        if candidates:
            pick = max if column.higher_is_better else min
            best = pick(cell.value for cell in candidates)
            for cell in candidates:
                cell.best = cell.value == best


def _average(name: str, members: Sequence[Row], columns: Sequence[Column]) -> Row:
    row = Row(f"average ({len(members)})", name, average=True)
    for column in columns:
        key = (column.task, column.metric)
        values = [m.cells[key].value for m in members if key in m.cells and math.isfinite(m.cells[key].value)]
        if values:
            row.cells[key] = Cell(float(np.mean(values)))
    return row


# --- rendering ------------------------------------------------------------------------------------------
PLUS_MINUS_NOTE = ("± is half the width of the 95% bootstrap interval over validation clips; σ the standard "
                   "deviation over training seeds (probe kinds with seeds > 1).")


def _cell_text(cell: Cell | None, column: Column, plus_minus: str, sigma: str) -> str:
    if cell is None or not math.isfinite(cell.value):
        return "–"
    text = f"{column.shown(cell.value):.{column.digits}f}"
    low, high = cell.ci
    if math.isfinite(low) and math.isfinite(high):
        text += f"{plus_minus}{column.shown((high - low) / 2):.{column.digits}f}"
    if cell.seeds > 1 and math.isfinite(cell.seed_std):
        text += f" ({sigma}{column.shown(cell.seed_std):.{column.digits}f})"
    return text


def _label(row: Row) -> str:
    return marked(row.label, row.random_init)


def _render_rows(table: HeadlineTable, cell: Callable[[Cell | None, Column], str]
                 ) -> list[tuple[str, list[tuple[Row, list[str]]]]]:
    return [(name, [(row, [cell(row.cells.get((c.task, c.metric)), c) for c in table.columns]) for row in rows])
            for name, rows in table.groups]


def markdown(table: HeadlineTable) -> str:
    def cell(value: Cell | None, column: Column) -> str:
        text = _cell_text(value, column, " ± ", "σ ")
        return f"**{text}**" if value is not None and value.best else text

    head = ["source", *(c.title for c in table.columns)]
    lines = [f"## {table.dataset}: {table.probe} probes", "", "| " + " | ".join(head) + " |",
             "|---" + "|---:" * len(table.columns) + "|"]
    for name, rows in _render_rows(table, cell):
        lines.append(f"| ***{paradigm(name).label}*** |" + " |" * len(table.columns))
        for row, cells in rows:
            label = f"*{paradigm(name).label} {row.label}*" if row.average else _label(row)
            cells = [f"*{c}*" if row.average and c != "–" else c for c in cells]
            lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                          ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$")):
        text = text.replace(char, escaped)
    return text


def latex(table: HeadlineTable) -> str:
    def cell(value: Cell | None, column: Column) -> str:
        text = _cell_text(value, column, r" $\pm$ ", r"$\sigma$ ")
        return rf"\textbf{{{text}}}" if value is not None and value.best else text

    width = len(table.columns) + 1
    lines = [f"% {table.dataset}: {table.probe} probes. {PLUS_MINUS_NOTE}",
             r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
             " & ".join(["Source", *(_latex_escape(c.title) for c in table.columns)]) + r" \\"]
    for name, rows in _render_rows(table, cell):
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\textit{{{paradigm(name).label}}}}} \\"]
        for row, cells in rows:
            label = rf"\textit{{Average ({len(rows) - 1})}}" if row.average else _latex_escape(_label(row))
            cells = [rf"\textit{{{c}}}" if row.average and c != "–" else c for c in cells]
            lines.append(" & ".join([label, *cells]).replace("–", "--") + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def html_table(table: HeadlineTable) -> str:
    def cell(value: Cell | None, column: Column) -> str:
        text = html.escape(_cell_text(value, column, " ± ", "σ "))
        return f"<b>{text}</b>" if value is not None and value.best else text

    head = "".join(f"<th>{html.escape(c.title)}</th>" for c in table.columns)
    body = []
    for name, rows in _render_rows(table, cell):
        body.append(f'<tr class="group"><th colspan="{len(table.columns) + 1}">'
                    f"{html.escape(paradigm(name).label)}</th></tr>")
        for row, cells in rows:
            kind = ' class="average"' if row.average else ""
            label = row.label.capitalize() if row.average else _label(row)
            body.append(f"<tr{kind}><td>{html.escape(label)}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                        + "</tr>")
    return (f"<h2>{html.escape(table.dataset)}: {html.escape(table.probe)} probes</h2>\n"
            f"<table><thead><tr><th>source</th>{head}</tr></thead><tbody>\n" + "\n".join(body)
            + "\n</tbody></table>")


HTML_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:2em;font-size:14px}
th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
tr.group th{text-align:left;background:#f2f2f2;font-style:italic}
tr.average td{font-style:italic;color:#555}"""
