"""The Snakemake DAG end to end on a small config (fusions, tables, plots, report); new probes and fusions
reuse caches; bad configs fail early."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clipstore import write_clip_store
from clipstore.synthetic import SyntheticSpec, render_clip
from extractors.featurestore import open_feature_store
from extractors.registry import resolve_model
from probes.tasks import TASKS
from tests import pagecheck
from tests.conftest import REPO

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

SMALL_CONFIG = {
    "seed": 0,
    "datasets": {"tiny": {"kind": "synthetic", "clips": 16, "frames": 5, "height": 32, "width": 32,
                          "val_fraction": 0.25}},
    "models": {
        "pixels": {"family": "pixels", "layers": "all", "options": {"patch_size": 8}},
        "random-patch": {"family": "random-patch", "layers": [0, -1],
                         "options": {"patch_size": 8, "channels": 16, "depth": 2}},
        "wan": {"family": "wan-t2v", "checkpoint": "resources/models/tiny-wan-t2v", "layers": [-1],
                "timesteps": [500], "options": {"frames": 5, "resolution": [32, 32], "random_init": True,
                                                "max_text_tokens": 8}},
        "qwen": {"family": "qwen2.5-vl", "checkpoint": "resources/models/tiny-qwen2.5-vl", "layers": [-1],
                 "options": {"random_init": True}},
    },
    "fusions": {
        "wan+qwen": {"sources": ["wan@t500@L2", "qwen@none@L2"], "mode": "concat"},
        "wan+qwen-ln": {"sources": ["wan@t500@L2", "qwen@none@L2"], "mode": "lnconcat", "materialise": True},
    },
    "extraction": {"clips_per_shard": 8},
    # 5-frame clips: the VLM sees query frames 0 and 1 only, so samples are those two views
    "tasks": {"geometry": {"options": {"views": 2, "min_gap": 1, "window": 2, "snap_stride": 1},
                           "probes": {"linear": {}}}},
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(config_path), "--cores", "2", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=900)


def scheduled_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table ({} when nothing is to be done); the per-model
    extraction rules (extract_<model>) are summed under 'extract'."""
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    jobs: dict[str, int] = {}
    for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M):
        key = "extract" if rule.startswith("extract_") else rule
        jobs[key] = jobs.get(key, 0) + int(count)
    return jobs


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, snakemake(workdir, SMALL_CONFIG)


SOURCES = ["pixels@none@L0", "qwen@none@L2", "random-patch@none@L0", "random-patch@none@L1", "wan+qwen-ln@none@L0",
           "wan+qwen@none@L0", "wan@t500@L2"]


@pytest.mark.e2e
def test_dag_runs_end_to_end_and_says_where_the_table_is(demo_run) -> None:
    workdir, result = demo_run
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert f"Results table: {workdir / 'results/tables/headline.md'}" in output
    assert "## tiny: linear probes" in output and "***Fusions***" in output  # the headline table is shown
    rows = list(csv.DictReader((workdir / "results/tables/summary.csv").open()))
    assert [r["source"] for r in rows] == SOURCES
    for row in rows:
        assert 0 < float(row["geometry/linear/AbsRel"]) < 2 and 0 <= float(row["geometry/linear/delta1"]) <= 1
        assert 0 <= float(row["geometry/linear/AUC@30"]) <= 1 and float(row["geometry/linear/P-map"]) > 0
    assert [(r["paradigm"], r["random_init"]) for r in rows] == [
        ("baseline", "False"), ("vlm", "True"), ("baseline", "False"), ("baseline", "False"), ("fusion", "True"),
        ("fusion", "True"), ("vgm", "True")]
    assert "wan@t500@L2 (random-init)" in (workdir / "results/tables/summary.md").read_text()
    for path in ("results/data/tiny.zarr", "results/features/tiny/pixels/none/shard-1.zarr",
                 "results/tables/headline.md", "results/tables/headline.tex", "results/tables/headline.html",
                 "results/tables/metrics.csv", "results/tables/summary.md", "results/tables/summary.tex",
                 "results/plots/tiny/layers/geometry-linear.png", "results/plots/tiny/paradigms/linear.png",
                 "results/plots/tiny/fusions/wan+qwen-linear.png", "results/plots/tiny/fusions/wan+qwen-ln-linear.png",
                 "results/features/tiny/wan/t500/shard-0.zarr", "results/logs/extract/tiny/pixels/shard-0.log",
                 "results/features/tiny/wan+qwen-ln/none/shard-1.zarr", "results/logs/fuse/tiny/wan+qwen-ln/shard-1.log",
                 "results/benchmarks/probe/tiny/geometry/pixels@none@L0/linear.tsv"):
        assert (workdir / path).exists(), path
    assert not (workdir / "results/features/tiny/wan+qwen").exists(), "an on-the-fly fusion writes no store"
    assert not list((workdir / "results").rglob("*.partial")), "no half-written output may remain"
    vlm_store = open_feature_store([workdir / "results/features/tiny/qwen/none/shard-0.zarr"])
    assert vlm_store.frame_index.tolist() == [0, 1]  # the query frames of a 5-frame clip
    assert vlm_store.attrs["input_grid"] == {"resized": [56, 56], "merged_tokens": [2, 2]}


@pytest.mark.e2e
def test_frame_maps_known_before_extraction_match_the_stores(demo_run) -> None:
    workdir, result = demo_run
    assert result.returncode == 0
    for name, entry in SMALL_CONFIG["models"].items():
        model = resolve_model(name, entry)
        token = model.timestep_tokens[0]
        store = open_feature_store([workdir / f"results/features/tiny/{name}/{token}/shard-0.zarr"])
        assert model.build(0).expected_frame_index(5).tolist() == store.frame_index.tolist(), name
    fused = open_feature_store([workdir / "results/features/tiny/wan+qwen-ln/none/shard-0.zarr"])
    assert fused.frame_index.tolist() == [0, 1] and fused.attrs["fusion"]["mode"] == "lnconcat"


def _shown(value: float, metric: str, task: str) -> str:
    return f"{value * 100:.1f}" if metric in TASKS[task].percent else f"{value:.3f}"


@pytest.mark.e2e
def test_tables_hold_the_numbers_of_the_runs(demo_run) -> None:
    workdir, result = demo_run
    assert result.returncode == 0
    records = {(r["source"], r["metric"]): r for r in csv.DictReader((workdir / "results/tables/metrics.csv").open())}
    wide = {r["source"]: r for r in csv.DictReader((workdir / "results/tables/summary.csv").open())}
    headline = (workdir / "results/tables/headline.md").read_text()
    for source in SOURCES:
        run = json.loads((workdir / f"results/probes/tiny/geometry/{source}/linear/metrics.json").read_text())
        assert run["val_clips"] == 4 and run["seeds"] == [0]
        for metric, value in run["metrics"].items():
            row = records[(source, metric)]
            assert float(row["value"]) == value and float(wide[source][f"geometry/linear/{metric}"]) == value
            low, high = run["ci"][metric]
            assert (float(row["ci_low"]), float(row["ci_high"])) == (low, high)
            assert low - 1e-9 <= value <= high + 1e-9
        line = next(line for line in headline.splitlines() if line.startswith(f"| {source} "))
        for metric in TASKS["geometry"].headline:
            low, high = run["ci"][metric]
            expected = f"{_shown(run['metrics'][metric], metric, 'geometry')} ± {_shown((high - low) / 2, metric, 'geometry')}"
            assert expected in line, (source, metric, line)
    assert records[("wan+qwen@none@L0", "AbsRel")]["branches"] == "wan@t500@L2;qwen@none@L2"


@pytest.mark.e2e
def test_report_holds_every_table_and_plot_and_renders(demo_run, tmp_path: Path) -> None:
    workdir, result = demo_run
    assert result.returncode == 0
    report = snakemake(workdir, SMALL_CONFIG, "--report", str(workdir / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    page = (workdir / "report.html").read_text()
    plots = sorted(p.name for p in (workdir / "results/plots").rglob("*.png"))
    assert plots == ["geometry-linear.png", "linear.png", "wan+qwen-linear.png", "wan+qwen-ln-linear.png"]
    for name in [*plots, "headline.html", "metrics.csv", "summary.csv"]:
        assert f'"{name}"' in page, name
    for category in ("1. Tables", "2. Plots (layers)", "2. Plots (paradigms)", "2. Plots (fusions)"):
        assert category in page, category
    if not pagecheck.browser_available():
        pytest.skip("chromium, chromedriver or selenium missing: rendering not checked")
    with pagecheck.headless_page(workdir / "report.html") as driver:
        pagecheck.open_report_item(driver, "1. Tables", "headline")
        assert "tiny: linear probes" in pagecheck.shown_result_text(driver)
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert pagecheck.console_errors(driver) == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.e2e
def test_new_probes_and_tasks_reuse_cached_features(demo_run) -> None:
    workdir, result = demo_run
    assert result.returncode == 0
    assert scheduled_jobs(snakemake(workdir, SMALL_CONFIG, "-n")) == {}

    reordered = _reversed(SMALL_CONFIG)  # the same meaning written in another order re-runs nothing
    assert list(reordered["models"]["wan"]["options"]) != list(SMALL_CONFIG["models"]["wan"]["options"])
    assert scheduled_jobs(snakemake(workdir, reordered, "-n")) == {}

    new_task = copy.deepcopy(SMALL_CONFIG)
    new_task["tasks"]["tagging"] = {"options": {"min_pixels": 20, "views": 2, "min_gap": 1, "window": 2,
                                                "snap_stride": 1}, "probes": {"linear": {"C": 0.5}}}
    jobs = scheduled_jobs(snakemake(workdir, new_task, "-n"))
    assert jobs["probe"] == 7 and "dataset" not in jobs and "extract" not in jobs, jobs

    new_settings = copy.deepcopy(SMALL_CONFIG)
    new_settings["tasks"]["geometry"]["probes"]["linear"] = {"alphas": [1.0, 10.0]}
    jobs = scheduled_jobs(snakemake(workdir, new_settings, "-n"))
    assert jobs["probe"] == 7 and "dataset" not in jobs and "extract" not in jobs, jobs

    for change in ("add", "mode", "remove"):
        fusions = copy.deepcopy(SMALL_CONFIG)
        if change == "add":
            fusions["fusions"]["pix+qwen"] = {"sources": ["pixels@none@L0", "qwen@none@L2"], "materialise": True}
        elif change == "mode":
            fusions["fusions"]["wan+qwen"]["mode"] = "lnconcat"
        else:
            del fusions["fusions"]["wan+qwen-ln"]
        jobs = scheduled_jobs(snakemake(workdir, fusions, "-n"))
        assert not {"extract", "dataset", "tiny_model"} & set(jobs), (change, jobs)
        assert jobs.get("probe", 0) == {"add": 1, "mode": 1, "remove": 0}[change], (change, jobs)
        assert jobs.get("fuse", 0) == {"add": 2, "mode": 0, "remove": 0}[change], (change, jobs)

    new_layer = copy.deepcopy(SMALL_CONFIG)
    new_layer["models"]["pixels"]["options"] = {"patch_size": 4}  # a model change does re-extract that model
    jobs = scheduled_jobs(snakemake(workdir, new_layer, "-n"))
    assert jobs["extract"] == 2 and "dataset" not in jobs and "tiny_model" not in jobs, jobs


def _reversed(config):
    """``config`` with the keys of every mapping in reverse order."""
    if isinstance(config, dict):
        return {key: _reversed(config[key]) for key in reversed(list(config))}
    return copy.deepcopy(config)


def _store_without_depth(path: Path) -> Path:
    spec = SyntheticSpec(clips=4, frames=2, height=16, width=16)
    return write_clip_store(path, lambda i: render_clip(spec, i), clip_ids=list("abcd"),
                            splits=["train", "train", "val", "val"], class_names=[str(i) for i in range(6)],
                            frames=2, height=16, width=16, attributes={}, arrays=["frames", "tag_counts"],
                            progress=False)


def _mutate(path: tuple, value) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    *parents, key = path
    target = config
    for parent in parents:
        target = target[parent]
    target[key] = value
    return config


BAD_CONFIGS = {
    "unknown key": (_mutate(("bogus",), 1), "top level: Additional properties are not allowed ('bogus'"),
    "bad value": (_mutate(("datasets", "tiny", "clips"), 0), "datasets.tiny.clips: 0 is less than the minimum"),
    "unknown family": (_mutate(("models", "pixels", "family"), "wan9"),
                       "models.pixels.family: 'wan9' is not one of ['"),
    "layer out of range": (_mutate(("models", "random-patch", "layers"), [2]),
                           "random-patch: layer 2 is out of range; valid layers are 0..1"),
    "missing dataset root": (_mutate(("datasets", "tiny"), {"kind": "clipstore", "root": "/no/such/store.zarr"}),
                             "dataset 'tiny': root '/no/such/store.zarr' does not exist"),
    "unknown probe setting": (_mutate(("tasks", "geometry", "probes", "linear"), {"alpha": 3}),
                              "task 'geometry', probe 'linear': unknown setting(s) ['alpha']"),
    "unknown model for a probe kind": (_mutate(("tasks", "geometry", "probes", "light"), {"models": ["wan9"]}),
                                       "task 'geometry', probe 'light': unknown model(s) ['wan9']"),
    "impossible frame protocol": (_mutate(("tasks", "geometry", "options"), {"views": 8, "min_gap": 2}),
                                  "task 'geometry': frame protocol: min_gap=2 < snap_stride=4"),
    "unknown task": (_mutate(("tasks", "depth"), {"probes": {"linear": {}}}),
                     "unknown task 'depth'; known: ['geometry', 'instance', 'tagging']"),
    "unknown probe kind": (_mutate(("tasks", "geometry", "probes", "heavy"), {}),
                           "task 'geometry': unknown probe kind 'heavy'; known: ['linear', 'light', 'paper']"),
    "more views than any clip holds": (_mutate(("tasks", "geometry", "options"), {"views": 50}),
                                       "task 'geometry' on dataset 'tiny': frame protocol: 50 views with min_gap 5 "
                                       "need 246 frames, but clip 'synthetic-s0-c00000' has 5 frames"),
    "3-frame clips under the default protocol": (
        {**_mutate(("datasets", "tiny", "frames"), 3), "tasks": {"tagging": {"probes": {"linear": {}}}}},
        "task 'tagging' on dataset 'tiny': frame protocol: 8 views with min_gap 5 need 36 frames, but clip "
        "'synthetic-s0-c00000' has 3 frames"),
    "protocol a model cannot serve": (_mutate(("tasks", "geometry", "options"),
                                              {"views": 2, "min_gap": 2, "window": 5, "snap_stride": 1}),
                                      "model 'qwen' has no feature frame for clip frame(s) [2, 3, 4]"),
    "names equal after normalisation": (_mutate(("models", "random_patch"), {"family": "pixels"}),
                                        "models 'random-patch' and 'random_patch' differ only in punctuation"),
    "fusion named like a model": (_mutate(("fusions", "pixels"), {"sources": ["wan@t500@L2", "qwen@none@L2"]}),
                                  "fusion 'pixels': the name is taken by a model"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_any_job_with_one_clear_message(case: str, tmp_path: Path) -> None:
    config, message = BAD_CONFIGS[case]
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_dataset_lacking_an_array_a_task_needs(tmp_path: Path) -> None:
    root = _store_without_depth(tmp_path / "nodepth.zarr")
    config = _mutate(("datasets", "tiny"), {"kind": "clipstore", "root": str(root)})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert ("task 'geometry' needs array(s) ['depth', 'points', 'confidence', 'extrinsics', 'intrinsics'] that "
            "dataset 'tiny'") in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
