"""Tests for probes.plots: which figures write_plots writes, that they are PNGs, and the metrics CSV reader."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest
from PIL import Image

from probes.plots import read_metrics_csv, slugify, write_plots
from probes.tables import TIDY_COLUMNS

HEADLINE = {"tagging": ["AP_mid", "mAP", "Mid Ratio"], "instance": ["T-SR", "T-mIoU"],
            "geometry": ["P-map", "AbsRel", "AUC@30"]}
HIGHER = {"AP_mid": True, "mAP": True, "Mid Ratio": True, "T-SR": True, "T-mIoU": True, "P-map": False,
          "AbsRel": False, "AUC@30": True}
PROBES = ("linear", "light")
COMBOS = [(task, "linear") for task in HEADLINE] + [("tagging", "light")]  # (task, probe) pairs probed; kept few for speed
NAN = math.nan

# (model, paradigm, timestep, layer, random_init, branches)
SOURCES = [
    *[("wan-tiny", "vgm", t, layer, True, []) for t in ("t250", "t500") for layer in (1, 2)],
    ("qwen-tiny", "vlm", "none", 2, True, []),
    ("pixels", "baseline", "none", 0, False, []),
    ("oracle", "oracle", "none", 0, False, []),
    ("wan+qwen", "fusion", "none", 0, True, ["wan-tiny@t500@L2", "qwen-tiny@none@L2"]),
]


def _row(dataset: str, task: str, probe: str, source: tuple, metric: str, value: float, ci: bool) -> dict:
    model, paradigm, timestep, layer, random_init, branches = source
    return {"dataset": dataset, "task": task, "probe": probe, "source": f"{model}@{timestep}@L{layer}",
            "model": model, "family": model.split("-")[0], "paradigm": paradigm, "timestep": timestep,
            "layer": layer, "capture": "output", "random_init": random_init, "branches": list(branches), "metric": metric,
            "value": value, "ci_low": value - 0.05 if ci else NAN, "ci_high": value + 0.04 if ci else NAN,
            "seed_std": 0.01 if ci else NAN, "seeds": 3, "val_clips": 8}


def make_rows(dataset: str = "synth", sources: list[tuple] = SOURCES, seed: int = 0) -> list[dict]:
    """Every source x (task, probe) of COMBOS x headline metric, with some NaN CIs and one NaN value."""
    rng = random.Random(seed)
    rows = [_row(dataset, task, probe, source, metric, rng.uniform(0.1, 0.9), ci=rng.random() > 0.2)
            for task, probe in COMBOS for metric in HEADLINE[task] for source in sources]
    rows[3]["value"] = NAN
    return rows


def expected(dataset: str, models: list[str], fusions: list[str]) -> set[str]:
    names = {f"{dataset}/layers/{t}-{p}.png" for t, p in COMBOS}
    names |= {f"{dataset}/{kind}/{t}-{p}-{m}.png" for kind in ("timesteps", "heatmaps") for t, p in COMBOS
              for m in models}
    names |= {f"{dataset}/paradigms/{p}.png" for p in PROBES}
    return names | {f"{dataset}/fusions/{f}-{p}.png" for f in fusions for p in PROBES}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("plots")
    flat = [s for s in SOURCES if s[1] in {"vlm", "baseline"}]
    rows = make_rows() + [r for r in make_rows("flat", flat) if r["task"] == "tagging" and r["probe"] == "linear"]
    return out, write_plots(rows, out, HEADLINE, HIGHER)


def test_writes_expected_files(written: tuple[Path, list[Path]]) -> None:
    out, paths = written
    names = {p.relative_to(out).as_posix() for p in paths}
    flat = {"flat/layers/tagging-linear.png", "flat/paradigms/linear.png"}
    assert names == expected("synth", ["wan-tiny"], ["wan+qwen"]) | flat
    assert paths == sorted(paths)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == names


def test_no_sweep_no_timestep_figures(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    assert not (out / "flat" / "timesteps").exists() and not (out / "flat" / "heatmaps").exists()
    assert not (out / "flat" / "fusions").exists()


def test_figures_are_pngs(written: tuple[Path, list[Path]]) -> None:
    for path in written[1]:
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
        assert 300 <= width <= 4000 and 200 <= height <= 4000, (path, image.size)


def test_file_names_are_safe(written: tuple[Path, list[Path]]) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
    assert all(set(p.name) <= allowed for p in written[1])


def test_slugify() -> None:
    assert slugify("AUC@30") == "AUC30"
    assert slugify("Mid Ratio") == "Mid-Ratio"
    assert slugify("wan+qwen") == "wan+qwen"
    assert slugify("a/b c") == "a-b-c"


def test_all_nan_writes_nothing(tmp_path: Path) -> None:
    rows = make_rows()
    for row in rows:
        row.update(value=NAN, ci_low=NAN, ci_high=NAN)
    assert write_plots(rows, tmp_path, HEADLINE, HIGHER) == []
    assert not list(tmp_path.rglob("*.png"))


def test_nan_metric_and_missing_branch(tmp_path: Path) -> None:
    """A metric that is NaN everywhere is left out; a fusion whose branch is absent still plots."""
    sources = [s for s in SOURCES if s[0] != "qwen-tiny"]
    rows = [r for r in make_rows(sources=sources) if r["probe"] == "linear" and r["task"] == "geometry"]
    for row in rows:
        if row["metric"] == "AbsRel":
            row["value"] = NAN
    names = {p.relative_to(tmp_path).as_posix() for p in write_plots(rows, tmp_path, HEADLINE, HIGHER)}
    assert "synth/fusions/wan+qwen-linear.png" in names and "synth/heatmaps/geometry-linear-wan-tiny.png" in names


def test_non_headline_metrics_ignored(tmp_path: Path) -> None:
    rows = [r | {"metric": "F1"} for r in make_rows()]
    assert write_plots(rows, tmp_path, HEADLINE, HIGHER) == []


def test_csv_round_trip(tmp_path: Path) -> None:
    rows = make_rows()
    path = tmp_path / "metrics.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TIDY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row | {"branches": ";".join(row["branches"]),
                                   "ci_low": "" if math.isnan(row["ci_low"]) else row["ci_low"]})
    back = read_metrics_csv(path)
    assert len(back) == len(rows)
    for got, want in zip(back, rows):
        assert set(got) == set(TIDY_COLUMNS)
        for key in TIDY_COLUMNS:
            if isinstance(want[key], float) and math.isnan(want[key]):
                assert math.isnan(got[key]), key
            else:
                assert got[key] == want[key] and type(got[key]) is type(want[key]), key


def test_csv_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("dataset,task\nsynth,tagging\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_metrics_csv(path)
