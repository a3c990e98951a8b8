"""Results tables and plots from the probe runs' ``metrics.json`` files.

One row per (dataset, source); one column per ``{task}/{probe}/{metric}``; the source's model, family,
paradigm (oracle / baseline / vgm / vlm / vision-encoder), timestep, layer and whether its weights are random. The
Markdown table adds per-paradigm averages, the shape of the paper's Table 1.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SOURCE_COLUMNS = ("dataset", "source", "model", "family", "paradigm", "random_init", "timestep", "layer")
LOWER_IS_BETTER = {"AbsRel", "P-map"}


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
    metric = column.rsplit("/", 1)[-1]
    return column + (" ↓" if metric in LOWER_IS_BETTER else " ↑")


def _source_label(row: dict[str, Any]) -> str:
    return row["source"] + (" (random-init)" if row.get("random_init") else "")


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
    random_note = ("\nSources marked *(random-init)* come from randomly initialised models: they test the "
                   "pipeline, not a pretrained representation.\n") if any(r.get("random_init") for r in rows) else ""
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


def plot_summary(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike,
                 per_row: int = 4) -> None:
    """One horizontal bar chart per metric column (``per_row`` to a row), bars coloured by paradigm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"oracle": "#000000", "baseline": "#999999", "vgm": "#d95f02", "vlm": "#1b9e77", "vision-encoder": "#66a61e",
               "fusion": "#7570b3"}
    labels = [f"{r['dataset']}: {_source_label(r)}" for r in rows]
    ncols = max(1, min(per_row, len(columns)))
    nrows = max(1, math.ceil(len(columns) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols + 2.5, (0.3 * len(rows) + 1.0) * nrows),
                             sharey=True, squeeze=False)
    for axis, column in zip(axes.flat, columns):
        values = [r.get(column) if isinstance(r.get(column), float) else math.nan for r in rows]
        axis.barh(range(len(rows)), values, color=[colours.get(r.get("paradigm"), "#333333") for r in rows])
        axis.set_title(_header(column), fontsize=8)
        axis.tick_params(labelsize=7)
        if all(0 <= v <= 1 for v in values if not math.isnan(v)):
            axis.set_xlim(0, 1)
    for axis in list(axes.flat)[len(columns):]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_yticks(range(len(rows)), labels)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aggregate(probe_dirs: Iterable[str | os.PathLike], *, csv_path: str, md_path: str, tex_path: str,
              plot_path: str) -> list[dict[str, Any]]:
    records = load_records(probe_dirs)
    rows, columns = summary_rows(records), metric_columns(records)
    write_csv(rows, columns, csv_path)
    write_markdown(rows, columns, md_path)
    write_latex(rows, columns, tex_path)
    plot_summary(rows, columns, plot_path)
    return rows
