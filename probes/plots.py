"""Figures of probe results, one PNG per question a reader asks of the tidy results table.

Input rows are tidy: one per (dataset, task, probe kind, source, metric), with the columns of
:data:`probes.tables.TIDY_COLUMNS` (:func:`read_metrics_csv` parses ``results/tables/metrics.csv`` into them).
:func:`write_plots` writes, for each dataset:

- ``layers/{task}-{probe}.png``: each headline metric against layer, one line per (model, timestep);
- ``timesteps/{task}-{probe}-{model}.png``: a generative model's metrics against diffusion timestep,
  one line per layer;
- ``heatmaps/{task}-{probe}-{model}.png``: the same model as a layer x timestep grid;
- ``paradigms/{probe}.png``: every source's headline metrics as bars grouped by paradigm;
- ``fusions/{fusion}-{probe}.png``: each fused source next to the branches it was built from.

Only headline metrics are plotted; NaN values and NaN confidence intervals are skipped, and a figure
with nothing to show is not written. Bands and whiskers are the rows' 95% bootstrap intervals.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractors.ids import parse_timestep_token
from probes.paradigms import marked, paradigm, paradigm_rank
from probes.tables import TIDY_COLUMNS

_FLOAT_COLUMNS = ("value", "ci_low", "ci_high", "seed_std")
_INT_COLUMNS = ("layer", "seeds", "val_clips")
OPTIONAL_COLUMNS = {"capture": "output"}  # columns a table written before them lacks, with their value there
DPI = 110
# tab10/tab20 hues for further models of a paradigm, those least like the paradigm colours first
_SPARE = ("#1f77b4", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e", "#2ca02c",
          "#aec7e8", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#ffbb78", "#98df8a")
_MARKERS = {"vgm": "o", "vlm": "s", "vision-encoder": "^", "fusion": "P", "baseline": "X", "oracle": "*"}

Row = dict[str, Any]


# --------------------------------------------------------------------------- reading


def _float(text: str) -> float:
    text = text.strip()
    return float(text) if text else math.nan


def _int(text: str) -> int:
    text = text.strip()
    return int(float(text)) if text else 0


def _parse_row(raw: Mapping[str, str]) -> Row:
    row: Row = {key: raw.get(key) or OPTIONAL_COLUMNS.get(key) for key in TIDY_COLUMNS}
    row.update({key: _float(raw[key]) for key in _FLOAT_COLUMNS})
    row.update({key: _int(raw[key]) for key in _INT_COLUMNS})
    row["random_init"] = raw["random_init"].strip().lower() in {"true", "1", "yes"}
    row["branches"] = [b for b in raw["branches"].split(";") if b]
    return row


def read_metrics_csv(path: str | os.PathLike) -> list[Row]:
    """The tidy rows of a metrics CSV with a header of :data:`TIDY_COLUMNS` (extra columns are dropped).

    ``branches`` is ';'-joined (empty for none), ``random_init`` is "True"/"False", empty or "nan"
    numbers become NaN, and ``layer``, ``seeds`` and ``val_clips`` are ints.
    """
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TIDY_COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL_COLUMNS]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        return [_parse_row(raw) for raw in reader]


# --------------------------------------------------------------------------- helpers


def slugify(text: str) -> str:
    """A file-name-safe form of ``text``: whitespace and '/' become '-', other characters outside
    ``[A-Za-z0-9._+-]`` are dropped ("AUC@30" -> "AUC30", "Mid Ratio" -> "Mid-Ratio")."""
    text = re.sub(r"[\s/\\]+", "-", str(text).strip())
    return re.sub(r"[^A-Za-z0-9._+-]", "", text).strip(".") or "x"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _arrow(metric: str, higher_is_better: Mapping[str, bool]) -> str:
    if metric not in higher_is_better:
        return metric
    return f"{metric} {'↑' if higher_is_better[metric] else '↓'}"


def _source_label(row: Row) -> str:
    return marked(row["source"], bool(row.get("random_init")))


def _grouped(rows: Sequence[Row], *keys: str) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k, OPTIONAL_COLUMNS.get(k)) for k in keys)].append(row)
    return dict(groups)


def _present(rows: Sequence[Row], metrics: Sequence[str]) -> list[str]:
    """``metrics`` (in order) that have at least one finite value in ``rows``."""
    have = {r["metric"] for r in rows if _finite(r["value"])}
    return [m for m in metrics if m in have]


def _task_order(tasks: set[str], headline: Mapping[str, Sequence[str]]) -> list[str]:
    """The tasks present, in ``headline``'s order (the registry's)."""
    return [t for t in headline if t in tasks]


def _err(row: Row) -> tuple[float, float] | None:
    """(below, above) whisker lengths from the row's CI, or None when the CI is not finite."""
    value, low, high = row["value"], row["ci_low"], row["ci_high"]
    if not (_finite(low) and _finite(high)):
        return None
    return max(0.0, value - low), max(0.0, high - value)


def _grid(panels: int, per_row: int, width: float, height: float, sharey: bool = False):
    """A constrained-layout figure with ``panels`` axes, ``per_row`` to a row; spare axes removed."""
    plt = _pyplot()
    ncols = max(1, min(per_row, panels))
    nrows = math.ceil(panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), sharey=sharey,
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for axis in flat[panels:]:
        axis.remove()
    return fig, flat[:panels]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        _pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- line figures


@dataclass(frozen=True)
class _Series:
    label: str
    colour: str
    marker: str
    rows: tuple[Row, ...]


def _points(series: _Series, metric: str, x_of: Callable[[Row], float]) -> list[Row]:
    rows = [r for r in series.rows if r["metric"] == metric and _finite(r["value"])]
    return sorted(rows, key=x_of)


def _draw_series(axis, series: _Series, points: list[Row], x_of: Callable[[Row], float], dodge: float) -> None:
    """A line with a CI band, or, for a single point, a marker with CI whiskers shifted by ``dodge``."""
    style = dict(color=series.colour, marker=series.marker, markersize=5)
    if len(points) == 1:
        err = _err(points[0])
        yerr = None if err is None else [[err[0]], [err[1]]]
        axis.errorbar([x_of(points[0]) + dodge], [points[0]["value"]], yerr=yerr, capsize=3, linestyle="none",
                      **style)
        return
    xs = [x_of(r) for r in points]
    axis.plot(xs, [r["value"] for r in points], linewidth=1.5, **style)
    axis.fill_between(xs, [r["ci_low"] for r in points], [r["ci_high"] for r in points], color=series.colour,
                      alpha=0.15, linewidth=0)


def _dodges(series: Sequence[_Series], metric: str, x_of: Callable[[Row], float]) -> dict[str, float]:
    """Small x shifts that keep single-point series at the same x from hiding each other."""
    xs = [x_of(r) for s in series for r in s.rows]
    step = 0.04 * max(1.0, max(xs) - min(xs)) if xs else 0.0
    at: dict[float, list[str]] = defaultdict(list)
    for s in series:
        points = _points(s, metric, x_of)
        if len(points) == 1:
            at[x_of(points[0])].append(s.label)
    return {label: (i - (len(labels) - 1) / 2) * step for labels in at.values() for i, label in enumerate(labels)}


def _xticks(axis, ticks: list[float]) -> None:
    """Ticks at the x values themselves when they are few and far enough apart, else integer ticks."""
    from matplotlib.ticker import MaxNLocator

    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    if len(ticks) <= 8 and min(gaps, default=1) >= (ticks[-1] - ticks[0]) / 12:
        axis.set_xticks(ticks)
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _line_figure(series: Sequence[_Series], x_of: Callable[[Row], float], xlabel: str, metrics: Sequence[str],
                 higher_is_better: Mapping[str, bool], title: str, path: Path) -> Path:
    """A panel per metric, x from ``x_of``, one line per series, a figure legend at the right."""
    from matplotlib.lines import Line2D

    fig, axes = _grid(len(metrics), per_row=3, width=3.5, height=2.8)
    for axis, metric in zip(axes, metrics):
        dodges = _dodges(series, metric, x_of)
        for s in series:
            points = _points(s, metric, x_of)
            if points:
                _draw_series(axis, s, points, x_of, dodges.get(s.label, 0.0))
        axis.set_title(_arrow(metric, higher_is_better), fontsize=10)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(metric)
        _xticks(axis, sorted({x_of(r) for s in series for r in s.rows}))
        axis.grid(alpha=0.3)
        axis.tick_params(labelsize=8)
    handles = [Line2D([], [], color=s.colour, marker=s.marker, label=s.label) for s in series]
    fits = max(4, int(fig.get_figheight() * 72 / 13) - 2)  # legend rows that fit beside the panels
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
               ncols=math.ceil(len(handles) / fits), title="bands, whiskers: 95% CI", title_fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _colours(count: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(count)]


def _shades(base: str, count: int) -> list[str]:
    """``count`` shades of ``base``, light to dark (the base itself when ``count`` is 1)."""
    from matplotlib.colors import to_hex, to_rgb

    if count == 1:
        return [base]
    rgb = to_rgb(base)
    mixes = [-0.55 + 0.85 * i / (count - 1) for i in range(count)]  # <0: towards white, >0: towards black
    return [to_hex([c + (1 - c) * -m if m < 0 else c * (1 - m) for c in rgb]) for m in mixes]


def _series_order(rows: Sequence[Row]) -> tuple:
    first = rows[0]
    timestep = parse_timestep_token(first["timestep"])
    return (paradigm_rank(first["paradigm"]), first["model"], first.get("capture", "output"),
            -1 if timestep is None else timestep, first["layer"])


def _model_bases(models: Sequence[tuple[str, str]]) -> dict[str, str]:
    """A hue per (model, paradigm): the paradigm's colour for its first model, then unused tab10/tab20 colours."""
    bases: dict[str, str] = {}
    for i, (model, name) in enumerate(models):
        own, taken = paradigm(name).colour, set(bases.values())
        free = [c for c in _SPARE if c not in taken]
        bases[model] = own if own not in taken else free[0] if free else _SPARE[i % len(_SPARE)]
    return bases


def _model_colours(groups: Sequence[Sequence[Row]]) -> list[str]:
    """A hue per model (black for the oracle), shaded light to dark over the model's timesteps."""
    models = list(dict.fromkeys((g[0]["model"], g[0]["paradigm"]) for g in groups if g[0]["paradigm"] != "oracle"))
    bases = _model_bases(models)
    models = list(bases)
    shades = {m: iter(_shades(bases[m], sum(g[0]["model"] == m for g in groups))) for m in models}
    return ["#000000" if g[0]["paradigm"] == "oracle" else next(shades[g[0]["model"]]) for g in groups]


def _model_series(rows: Sequence[Row]) -> list[_Series]:
    """One series per (model, timestep, capture), in paradigm order; random-init models marked in the label."""
    groups = sorted(_grouped(rows, "model", "timestep", "capture").values(), key=_series_order)
    series = []
    for group, colour in zip(groups, _model_colours(groups)):
        first = group[0]
        label = first["model"] + ("" if first["timestep"] == "none" else f" @{first['timestep']}")
        capture = first.get("capture", "output")
        label += "" if capture == "output" else f" {capture}"
        label = marked(label, any(r.get("random_init") for r in group))
        series.append(_Series(label, colour, _MARKERS.get(first["paradigm"], "D"), tuple(group)))
    return series


def plot_layers(rows: Sequence[Row], path: str | os.PathLike, metrics: Sequence[str],
                higher_is_better: Mapping[str, bool]) -> Path | None:
    """Metric against layer for one (dataset, task, probe): a panel per metric in ``metrics`` that has data,
    one line (with its CI band) per (model, timestep); single-layer sources (baselines, the oracle, a VLM
    probed at one layer) are a marker with CI whiskers. Fusions have no layers and are left out."""
    rows = [r for r in rows if r["paradigm"] != "fusion"]
    present = _present(rows, metrics)
    if not present:
        return None
    first = rows[0]
    title = f"{first['dataset']}: {first['task']}, {first['probe']} probe — score by layer"
    return _line_figure(_model_series(rows), lambda r: r["layer"], "layer", present, higher_is_better, title,
                        Path(path))


def plot_timesteps(rows: Sequence[Row], path: str | os.PathLike, metrics: Sequence[str],
                   higher_is_better: Mapping[str, bool]) -> Path | None:
    """Metric against diffusion timestep for one generative model on one (dataset, task, probe): a panel per
    metric that has data, one line (with its CI band) per layer. None unless >= 2 timesteps have data."""
    rows = [r for r in rows if parse_timestep_token(r["timestep"]) is not None]
    present = _present(rows, metrics)
    if not present or len({r["timestep"] for r in rows if _finite(r["value"])}) < 2:
        return None
    groups = [g for _, g in sorted(_grouped(rows, "layer").items())]
    series = [_Series(marked(f"L{g[0]['layer']}", any(r.get("random_init") for r in g)),
                      colour, "o", tuple(g)) for g, colour in zip(groups, _colours(len(groups)))]
    first = rows[0]
    title = f"{first['dataset']}: {first['model']} — {first['task']}, {first['probe']} probe by diffusion timestep"
    return _line_figure(series, lambda r: parse_timestep_token(r["timestep"]), "diffusion timestep", present,
                        higher_is_better, title, Path(path))


# --------------------------------------------------------------------------- heatmaps


def _heat_panel(fig, axis, rows: Sequence[Row], metric: str, higher: bool | None) -> None:
    import numpy as np

    layers = sorted({r["layer"] for r in rows})
    steps = sorted({parse_timestep_token(r["timestep"]) for r in rows})
    grid = np.full((len(layers), len(steps)), np.nan)
    for r in rows:
        if r["metric"] == metric and _finite(r["value"]):
            grid[layers.index(r["layer"]), steps.index(parse_timestep_token(r["timestep"]))] = r["value"]
    image = axis.imshow(np.ma.masked_invalid(grid), cmap="viridis_r" if higher is False else "viridis",
                        aspect="auto", origin="lower")
    for (i, j), value in np.ndenumerate(grid):
        red, green, blue, _ = image.cmap(image.norm(value)) if math.isfinite(value) else (1, 1, 1, 1)
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        axis.text(j, i, f"{value:.3f}" if math.isfinite(value) else "–", ha="center", va="center", fontsize=8,
                  color="white" if dark else "black")
    axis.set_xticks(range(len(steps)), [f"t{s}" for s in steps], fontsize=8)
    axis.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers], fontsize=8)
    axis.set_xlabel("diffusion timestep")
    axis.set_ylabel("layer")
    fig.colorbar(image, ax=axis, shrink=0.9).ax.tick_params(labelsize=7)


def plot_heatmap(rows: Sequence[Row], path: str | os.PathLike, metrics: Sequence[str],
                 higher_is_better: Mapping[str, bool]) -> Path | None:
    """A generative model's layer x timestep grid on one (dataset, task, probe): a panel per metric with data,
    values written in the cells; brighter is better for every metric (reversed colour map for ↓ metrics).
    None unless the model has >= 2 layers and >= 2 timesteps."""
    rows = [r for r in rows if parse_timestep_token(r["timestep"]) is not None and r["metric"] in metrics]
    present = _present(rows, metrics)
    if not present or len({r["layer"] for r in rows}) < 2 or len({r["timestep"] for r in rows}) < 2:
        return None
    first = rows[0]
    cells = len({r["timestep"] for r in rows})
    height = 1.7 + 0.45 * len({r["layer"] for r in rows})
    fig, axes = _grid(len(present), per_row=3, width=max(3.0, 1.6 + 0.75 * cells), height=height)
    for axis, metric in zip(axes, present):
        _heat_panel(fig, axis, rows, metric, higher_is_better.get(metric))
        axis.set_title(_arrow(metric, higher_is_better), fontsize=10)
    model = marked(first["model"], any(r.get("random_init") for r in rows))
    fig.suptitle(f"{first['dataset']}: {model} — {first['task']}, {first['probe']} probe\n"
                 "layer × diffusion timestep (brighter = better)", fontsize=10)
    return _save(fig, Path(path))


# --------------------------------------------------------------------------- bar figures


@dataclass(frozen=True)
class _Slot:
    """One row of a horizontal bar chart: a source's bar, or (source None) a group heading."""
    label: str
    colour: str
    source: str | None = None


def _bars(axis, bars: Sequence[tuple[int, Row, str]], annotate: bool) -> None:
    """(y, row, colour) bars in one call, CI whiskers where finite, values written past the whisker."""
    ys, rows, colours = zip(*bars)
    axis.barh(ys, [r["value"] for r in rows], color=colours, height=0.7)
    whiskers = [(y, r, _err(r)) for y, r in zip(ys, rows) if _err(r) is not None]
    if whiskers:
        axis.errorbar([r["value"] for _, r, _ in whiskers], [y for y, _, _ in whiskers], fmt="none", ecolor="black",
                      xerr=[[e[0] for *_, e in whiskers], [e[1] for *_, e in whiskers]], capsize=2, linewidth=0.8)
    for y, row in zip(ys, rows) if annotate else ():
        end = row["value"] + (_err(row) or (0.0, 0.0))[1]
        axis.annotate(f"{row['value']:.3f}", (max(end, 0.0), y), xytext=(3, 0), textcoords="offset points",
                      fontsize=7, va="center")


def _bar_panel(axis, slots: Sequence[_Slot], values: Mapping[str, Row], annotate: bool) -> None:
    """Bars of one panel; headings as bold text rows with a rule above; "n/a" where a source has no value."""
    from matplotlib.transforms import blended_transform_factory

    left = blended_transform_factory(axis.transAxes, axis.transData)
    bars = []
    for y, slot in enumerate(slots):
        row = values.get(slot.source) if slot.source else None
        if slot.source is None:
            axis.text(0.01, y, slot.label, transform=left, fontsize=8, fontweight="bold", color=slot.colour,
                      va="center")
            if y:
                axis.axhline(y - 0.5, color="#cccccc", linewidth=0.8)
        elif row is not None and _finite(row["value"]):
            bars.append((y, row, slot.colour))
        else:
            axis.text(0.01, y, "n/a", transform=left, fontsize=7, color="#888888", va="center")
    if bars:
        _bars(axis, bars, annotate)
    if annotate:
        axis.margins(x=0.18)
    axis.axvline(0, color="#666666", linewidth=0.6)
    axis.grid(axis="x", alpha=0.3)
    axis.tick_params(labelsize=7)


def _bar_figure(slots: Sequence[_Slot], panels: Sequence[tuple[str, str]], lookup: Mapping[tuple, Row],
                higher_is_better: Mapping[str, bool], title: str, path: Path, annotate: bool = False) -> Path:
    """Horizontal bars, one panel per (task, metric), sources on the shared y axis."""
    label_width = max(len(s.label) for s in slots if s.source) * 0.055 + 0.4
    per_row = 4 if len(slots) <= 24 else len(panels)  # long source lists: one row of panels, not a tall stack
    fig, axes = _grid(len(panels), per_row=per_row, width=2.6, height=0.22 * len(slots) + 1.4, sharey=True)
    for axis, (task, metric) in zip(axes, panels):
        values = {s.source: lookup[(s.source, task, metric)] for s in slots if (s.source, task, metric) in lookup}
        _bar_panel(axis, slots, values, annotate)
        axis.set_title(f"{task}: {_arrow(metric, higher_is_better)}", fontsize=9)
        axis.set_xlabel(metric, fontsize=8)
    axes[0].set_yticks(range(len(slots)), [s.label if s.source else "" for s in slots])
    axes[0].set_ylim(len(slots) - 0.5, -0.5)
    fig.set_figwidth(fig.get_figwidth() + label_width)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _panels(rows: Sequence[Row], headline: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(task, metric) panels in task order then headline order, only those with a finite value."""
    tasks = _task_order({r["task"] for r in rows}, headline)
    return [(t, m) for t in tasks for m in _present([r for r in rows if r["task"] == t], headline[t])]


def _lookup(rows: Sequence[Row]) -> dict[tuple, Row]:
    return {(r["source"], r["task"], r["metric"]): r for r in rows}


def plot_paradigms(rows: Sequence[Row], path: str | os.PathLike, headline: Mapping[str, Sequence[str]],
                   higher_is_better: Mapping[str, bool]) -> Path | None:
    """The family comparison for one (dataset, probe): a panel per headline metric of every task, one bar
    (with CI whiskers) per source, grouped under paradigm headings and coloured by paradigm."""
    panels = _panels(rows, headline)
    if not panels:
        return None
    slots: list[_Slot] = []
    firsts = {r["source"]: r for r in rows}
    by_paradigm = _grouped(list(firsts.values()), "paradigm")
    for (name,) in sorted(by_paradigm, key=lambda k: (paradigm_rank(k[0]), k[0])):
        style = paradigm(name)
        slots.append(_Slot(style.label, style.colour))
        for row in sorted(by_paradigm[(name,)], key=lambda r: _series_order([r])):
            slots.append(_Slot(_source_label(row), style.colour, row["source"]))
    first = rows[0]
    title = f"{first['dataset']}: {first['probe']} probe — sources by paradigm"
    return _bar_figure(slots, panels, _lookup(rows), higher_is_better, title, Path(path))


def plot_fusion(fusion: str, rows: Sequence[Row], path: str | os.PathLike, headline: Mapping[str, Sequence[str]],
                higher_is_better: Mapping[str, bool]) -> Path | None:
    """A fused source next to its branches on one (dataset, probe): a panel per headline metric of the tasks
    the fusion was probed on, bars (with CI whiskers and values) for each branch found and for the fusion."""
    own = [r for r in rows if r["source"] == fusion]
    panels = _panels(own, headline)
    if not panels:
        return None
    lookup = _lookup(rows)
    firsts = {r["source"]: r for r in rows}
    slots = [_Slot(_source_label(firsts[s]), paradigm(firsts[s]["paradigm"]).colour, s)
             for s in [*own[0]["branches"], fusion] if s in firsts]
    title = f"{own[0]['dataset']}: {own[0]['model']} vs its branches — {own[0]['probe']} probe"
    return _bar_figure(slots, panels, lookup, higher_is_better, title, Path(path), annotate=True)


# --------------------------------------------------------------------------- all figures


def _task_plots(rows: Sequence[Row], out: Path, metrics: Sequence[str],
                higher_is_better: Mapping[str, bool]) -> list[Path | None]:
    """Layer, timestep and heatmap figures of one (dataset, task, probe)."""
    task, probe = slugify(rows[0]["task"]), slugify(rows[0]["probe"])
    paths = [plot_layers(rows, out / "layers" / f"{task}-{probe}.png", metrics, higher_is_better)]
    generative = [r for r in rows if r["paradigm"] != "fusion" and parse_timestep_token(r["timestep"]) is not None]
    for (model, capture), model_rows in sorted(_grouped(generative, "model", "capture").items()):
        name = f"{task}-{probe}-{slugify(model)}{'' if capture == 'output' else '-' + slugify(capture)}.png"
        paths.append(plot_timesteps(model_rows, out / "timesteps" / name, metrics, higher_is_better))
        paths.append(plot_heatmap(model_rows, out / "heatmaps" / name, metrics, higher_is_better))
    return paths


def _fusion_plots(rows: Sequence[Row], out: Path, headline: Mapping[str, Sequence[str]],
                  higher_is_better: Mapping[str, bool]) -> list[Path | None]:
    """One figure per fused source with branches; named by model unless two fusions share it."""
    fusions = {r["source"]: r["model"] for r in rows if r["paradigm"] == "fusion" and r["branches"]}
    models = list(fusions.values())
    probe = slugify(rows[0]["probe"])
    return [plot_fusion(source, rows, out / "fusions" / f"{slugify(model if models.count(model) == 1 else source)}"
                        f"-{probe}.png", headline, higher_is_better) for source, model in sorted(fusions.items())]


def write_plots(rows: Sequence[Row], out_dir: str | os.PathLike, headline: Mapping[str, Sequence[str]],
                higher_is_better: Mapping[str, bool]) -> list[Path]:
    """Write every figure of the module docstring under ``out_dir/{dataset}/`` and return their paths, sorted.

    ``headline`` maps task -> its headline metrics in column order (only these are plotted);
    ``higher_is_better`` maps metric -> direction (↑/↓ in panel titles, colour-map orientation).
    """
    rows = [r for r in rows if r["metric"] in headline.get(r["task"], ())]
    paths: list[Path | None] = []
    for (dataset,), data in sorted(_grouped(rows, "dataset").items()):
        out = Path(out_dir) / slugify(dataset)
        for (task, _), task_rows in sorted(_grouped(data, "task", "probe").items()):
            paths += _task_plots(task_rows, out, headline[task], higher_is_better)
        for (probe,), probe_rows in sorted(_grouped(data, "probe").items()):
            paths.append(plot_paradigms(probe_rows, out / "paradigms" / f"{slugify(probe)}.png", headline,
                                        higher_is_better))
            paths += _fusion_plots(probe_rows, out, headline, higher_is_better)
    return sorted(p for p in paths if p is not None)
