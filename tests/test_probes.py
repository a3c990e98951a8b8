"""Calibration on exact ground truth: the oracle source scores near-perfectly where the probe kind can express the
task, and pure noise stays near chance. Both sources go through the real extraction path (registry families
``oracle`` and ``noise``, feature stores, ``frame_index``) and the real probe path (frame protocol, shared
data path, probe kinds, metrics), so these catch alignment and metric bugs that unit tests miss.

The store is small (48 clips of 17 frames at 32x32) to keep the suite fast; the thresholds are the issue's
(AbsRel < 0.02, T-mIoU > 0.9 on an exact grid, AUC@30 > 0.9) where the kind can reach them with this much
data, and say so where it cannot (the linear tagging probe on 36 training clips).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstore import open_clip_store
from clipstore.generate import write_synthetic_store
from clipstore.grid import area_matrix, bilinear_matrix
from clipstore.synthetic import SyntheticSpec
from extractors.job import run_extraction
from extractors.registry import resolve_model
from probes import aggregate
from probes.data import Sample, SampleReader
from probes.fitting import fit_and_score
from probes.job import run_probe
from probes.metrics import tagging_metrics
from probes.result import ClipStats, ProbeResult
from probes.sampler import FrameProtocol
from probes.sources import FeatureSource, SourceId
from probes.tagging import make_targets as tagging_targets
from probes.tagging import tag_labels
from probes.tasks import TASKS, resolve_task
from probes.uncertainty import BootstrapSettings, confidence_intervals

SPEC = SyntheticSpec(clips=48, frames=17, height=32, width=32, seed=5, val_fraction=0.25)
OPTIONS = {"tagging": {"views": 4, "min_pixels": 50},
           "instance": {"views": 4, "min_cluster_size": 10},
           "geometry": {"views": 4}}
SOURCES = {"oracle": {"family": "oracle", "layers": "all", "options": {"patch_size": 1}},
           "noise": {"family": "noise", "layers": "all", "options": {"patch_size": 4, "channels": 32}}}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("calib") / "s.zarr", SPEC, progress=False)


@pytest.fixture(scope="module")
def sources(store_path: Path) -> dict[str, FeatureSource]:
    made = {}
    for name, entry in SOURCES.items():
        path = store_path.parent / f"{name}.zarr"
        run_extraction(clip_store=store_path, outputs={None: path}, dataset="s", model=resolve_model(name, entry),
                       shard=0, clips_per_shard=SPEC.clips, seed=0, progress=False)
        made[name] = FeatureSource(SourceId(name, "none", 0), [path])
    return made


def _result(task: str, kind: str, source: FeatureSource, store_path: Path, **settings) -> ProbeResult:
    spec, options, probes = resolve_task(task, {"options": OPTIONS[task], "probes": {kind: settings}})
    store = open_clip_store(store_path)
    return fit_and_score(spec, kind, source, store, store.clips_in("train"), store.clips_in("val"),
                         probes[kind], options, seed=0)


def _score(task: str, kind: str, source: FeatureSource, store_path: Path, **settings) -> dict[str, float]:
    return _result(task, kind, source, store_path, **settings).metrics


def test_ground_truth_kept_at_query_frames_serves_the_oracle_and_the_probes(tmp_path: Path) -> None:
    """``ground_truth: query``: the oracle reads ground truth through the frame map and records those frames;
    targets and samples go through the same map, and the geometry probe stays near perfect."""
    from clipstore.ingest import StoreOptions

    store_path = write_synthetic_store(tmp_path / "q.zarr", SPEC, StoreOptions(ground_truth="query"), progress=False)
    store = open_clip_store(store_path)
    assert store.frame_map("depth").tolist() == [0, 1, 5, 9, 13] and store.zarr_array("frames").shape[1] == 17
    run_extraction(clip_store=store_path, outputs={None: tmp_path / "oracle.zarr"}, dataset="q",
                   model=resolve_model("oracle", SOURCES["oracle"]), shard=0, clips_per_shard=SPEC.clips, seed=0,
                   progress=False)
    oracle = FeatureSource(SourceId("oracle", "none", 0), [tmp_path / "oracle.zarr"])
    assert oracle.frame_index.tolist() == [0, 1, 5, 9, 13]
    scores = _score("geometry", "linear", oracle, store_path)
    assert scores["AbsRel"] < 0.02 and scores["AUC@30"] > 0.9, scores


def test_geometry_linear_oracle_is_near_perfect_and_noise_is_not(store_path: Path, sources) -> None:
    oracle = _score("geometry", "linear", sources["oracle"], store_path)
    noise = _score("geometry", "linear", sources["noise"], store_path)
    assert oracle["AbsRel"] < 0.02 and oracle["delta1"] > 0.99, oracle
    assert oracle["P-map"] < 0.02, oracle
    assert oracle["AUC@30"] > 0.9 and oracle["RRA@30"] > 0.95 and oracle["RTA@30"] > 0.95, oracle
    assert noise["AbsRel"] > 0.2 and noise["AUC@30"] < 0.5 and noise["P-map"] > 0.2, noise


def test_instance_linear_oracle_groups_objects_and_noise_does_not(store_path: Path, sources) -> None:
    oracle = _score("instance", "linear", sources["oracle"], store_path)
    noise = _score("instance", "linear", sources["noise"], store_path)
    # the linear (LDA) probe reaches ~0.88 T-mIoU on 144 training clips; the grid itself allows 1.0
    assert oracle["T-mIoU"] > 0.75 and oracle["T-SR"] > 0.6, oracle
    assert noise["T-mIoU"] < 0.2 and noise["T-SR"] < 0.1, noise


def test_tagging_linear_oracle_ranks_well_and_noise_is_at_chance(store_path: Path, sources) -> None:
    oracle = _score("tagging", "linear", sources["oracle"], store_path)
    noise = _score("tagging", "linear", sources["noise"], store_path)
    # 36 training clips are too few for a logistic regression on 38 channels to isolate the class channel
    # (0.94 mAP at 72 clips, 0.985 at 144); the exact ranking is checked directly below
    assert oracle["mAP"] > 0.8, oracle
    assert noise["mAP"] < 0.65 and oracle["mAP"] > noise["mAP"] + 0.2, (oracle, noise)


def test_oracle_class_channels_rank_tags_exactly(store_path: Path, sources) -> None:
    """Features and labels refer to the same views of the same clips: the oracle's pooled class fractions,
    used directly as scores, give AP 1 for every class."""
    store = open_clip_store(store_path)
    protocol = FrameProtocol(views=4)
    reader = SampleReader(sources["oracle"], store, tagging_targets({"min_pixels": 50, "min_frames": 1}))
    samples = Sample.of(protocol.validation_views(store.clips_in("val"), SPEC.frames))
    classes = len(store.class_names)
    fractions = np.stack([reader.features(s).mean(axis=(0, 1, 2))[4:4 + classes] for s in samples])
    labels = np.stack([reader.targets(s)["labels"] for s in samples])
    assert tagging_metrics(labels, fractions / fractions.max())["mAP"] == 1.0


def test_light_geometry_learns_from_the_oracle_not_from_noise(store_path: Path, sources) -> None:
    settings = {"epochs": 12, "device": "cpu", "dim": 32, "heads": 2}
    oracle = _score("geometry", "light", sources["oracle"], store_path, **settings)
    noise = _score("geometry", "light", sources["noise"], store_path, **settings)
    assert oracle["AbsRel"] < noise["AbsRel"] and oracle["AUC@30"] > noise["AUC@30"] + 0.2, (oracle, noise)


def test_tag_labels_apply_pixel_and_frame_thresholds() -> None:
    counts = np.array([[[150, 0], [60, 0], [0, 5]]])  # one sample, 3 views, 2 classes
    np.testing.assert_array_equal(tag_labels(counts, 200, 1), [[1, 0]])
    np.testing.assert_array_equal(tag_labels(counts, 200, 3), [[0, 0]])
    np.testing.assert_array_equal(tag_labels(counts, 5, 1), [[1, 1]])


@pytest.mark.parametrize("kind", ["linear", "light"])
def test_run_probe_writes_one_complete_directory(store_path: Path, sources, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "probes" / kind
    source = sources["noise"]
    settings = resolve_task("tagging", {"probes": {kind: {"epochs": 2, "dim": 16, "heads": 2} if kind == "light"
                                                   else {}}})[2][kind]
    spec = {"id": str(source.id), "stores": [str(p) for p in source.store.paths]}
    record = run_probe(dataset="s", clip_store=str(store_path), source=spec, task="tagging", probe=kind,
                       settings=settings, task_options=OPTIONS["tagging"] | {"min_frames": 1}, seed=0, out_dir=out)
    expected = ["metrics.json", "predictions.npz", "weights.safetensors", "clip_stats.npz"] + (
        ["curves.csv"] if kind == "light" else [])
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert not out.with_name(f"{kind}.partial").exists()
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["metrics"] == record["metrics"] and stored["source"] == "noise@none@L0"
    assert stored["feature_grid"] == [8, 8] and stored["layer"] == 0
    assert stored["seeds"] == [0] and stored["val_clips"] == len(open_clip_store(store_path).clips_in("val"))
    assert stored["bootstrap"]["resamples"] == 1000 and set(stored["ci"]) == set(stored["metrics"])
    kept = np.load(out / "clip_stats.npz")
    assert sorted(kept.files) == ["clip_index", "context/train_pos_rate", "seed0/labels", "seed0/scores"]
    predictions = np.load(out / "predictions.npz")
    store = open_clip_store(store_path)
    np.testing.assert_array_equal(predictions["clip_index"], store.clips_in("val"))
    assert predictions["views"][:, 0].tolist() == [0] * len(store.clips_in("val"))
    from safetensors import safe_open

    with safe_open(str(out / "weights.safetensors"), "np") as weights:
        assert weights.metadata()["task"] == "tagging" and len(list(weights.keys())) > 0


def test_same_seed_same_scores(store_path: Path, sources) -> None:
    settings = {"epochs": 2, "device": "cpu", "dim": 16, "heads": 2}
    first = _score("tagging", "light", sources["noise"], store_path, **settings)
    assert _score("tagging", "light", sources["noise"], store_path, **settings) == first


def test_summary_tables_label_random_init(tmp_path: Path) -> None:
    records = [
        {"dataset": "d", "source": "a@none@L0", "model": "a", "family": "pixels", "paradigm": "baseline",
         "random_init": False, "timestep": None, "layer": 0, "task": "geometry", "probe": "linear",
         "metrics": {"AbsRel": 0.5, "delta1": 0.2}},
        {"dataset": "d", "source": "w@t500@L1", "model": "w", "family": "wan", "paradigm": "vgm",
         "random_init": True, "timestep": 500, "layer": 1, "task": "geometry", "probe": "linear",
         "metrics": {"AbsRel": 0.25, "delta1": 0.6}},
    ]
    rows, columns = aggregate.summary_rows(records), aggregate.metric_columns(records)
    assert columns == ["geometry/linear/AbsRel", "geometry/linear/delta1"]
    aggregate.write_csv(rows, columns, tmp_path / "s.csv")
    aggregate.write_markdown(rows, columns, tmp_path / "s.md")
    text = (tmp_path / "s.md").read_text()
    assert "w@t500@L1 (random-init)" in text and "geometry/linear/AbsRel ↓" in text
    assert "vgm average (1)" in text
    assert (tmp_path / "s.csv").read_text().splitlines()[0].startswith("dataset,source,model,family,paradigm")


@pytest.mark.parametrize(("src", "dst"), [(32, 8), (30, 7), (5, 5)])
def test_area_matrix_averages_exact_cells(src: int, dst: int) -> None:
    weights = area_matrix(src, dst)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    if src % dst == 0:
        np.testing.assert_allclose(weights @ np.arange(src), np.arange(src).reshape(dst, -1).mean(axis=1))


@pytest.mark.parametrize(("src", "dst"), [(8, 32), (7, 30), (4, 4)])
def test_bilinear_matrix_matches_torch(src: int, dst: int) -> None:
    x = np.random.default_rng(0).standard_normal((src, 3))
    expected = torch.nn.functional.interpolate(torch.tensor(x.T[None]), size=dst, mode="linear",
                                               align_corners=False)[0].numpy().T
    np.testing.assert_allclose(bilinear_matrix(src, dst) @ x, expected, atol=1e-6)


@pytest.mark.parametrize("task", ["tagging", "instance", "geometry"])
@pytest.mark.parametrize("source", ["oracle", "noise"])
def test_bootstrap_intervals_hold_their_point_estimates(store_path: Path, sources, task: str, source: str) -> None:
    """From the per-clip statistics the evaluation keeps: all-ones weights give the point estimates exactly,
    count weights equal an explicit resample of the clips, and every 95% interval contains its estimate."""
    result = _result(task, "linear", sources[source], store_path)
    spec, stats = TASKS[task], result.clip_stats
    n = len(stats.clips)
    full = spec.resample_metrics(stats, np.ones((1, n)))
    for metric, value in result.metrics.items():
        np.testing.assert_allclose(full[metric][0], value, rtol=1e-9, equal_nan=True, err_msg=metric)
    picked = np.random.default_rng(1).integers(0, n, size=n)
    explicit = ClipStats(stats.clips[picked], {k: v[picked] for k, v in stats.values.items()}, stats.context)
    weighted = spec.resample_metrics(stats, np.bincount(picked, minlength=n)[None])
    for metric, values in spec.resample_metrics(explicit, np.ones((1, n))).items():
        np.testing.assert_allclose(weighted[metric], values, rtol=1e-9, equal_nan=True, err_msg=metric)
    intervals = confidence_intervals(spec, [stats], BootstrapSettings(resamples=1000, seed=0))
    for metric, value in result.metrics.items():
        low, high = intervals[metric]
        if np.isfinite(value):
            assert low - 1e-9 <= value <= high + 1e-9, (metric, low, value, high)


def test_bootstrap_intervals_shrink_as_clips_grow(store_path: Path, sources) -> None:
    stats = _result("geometry", "linear", sources["noise"], store_path).clip_stats
    many = ClipStats(np.tile(stats.clips, 8), {k: np.concatenate([v] * 8) for k, v in stats.values.items()})
    settings = BootstrapSettings(resamples=1000, seed=0)
    few_ci = confidence_intervals(TASKS["geometry"], [stats], settings)
    many_ci = confidence_intervals(TASKS["geometry"], [many], settings)
    for metric in ("AbsRel", "P-map", "AUC@30"):
        assert np.diff(many_ci[metric]) < 0.6 * np.diff(few_ci[metric]), metric


def test_seeds_train_several_times_and_report_mean_and_spread(store_path: Path, sources, tmp_path: Path) -> None:
    source = sources["noise"]
    settings = resolve_task("geometry", {"probes": {"linear": {"seeds": 3}}})[2]["linear"]
    spec = {"id": str(source.id), "stores": [str(p) for p in source.store.paths]}
    record = run_probe(dataset="s", clip_store=str(store_path), source=spec, task="geometry", probe="linear",
                       settings=settings, task_options={"views": 3}, seed=4, out_dir=tmp_path / "run")
    assert record["seeds"] == [4, 5, 6] and len(record["seed_metrics"]) == 3
    for metric, value in record["metrics"].items():
        per_seed = [m[metric] for m in record["seed_metrics"]]
        assert value == pytest.approx(np.mean(per_seed))
        assert record["seed_std"][metric] == pytest.approx(np.std(per_seed, ddof=1))
    assert len({m["AbsRel"] for m in record["seed_metrics"]}) > 1  # the seed changes the training samples
    kept = np.load(tmp_path / "run" / "clip_stats.npz")
    assert {"seed4/AbsRel", "seed5/AbsRel", "seed6/AbsRel"} <= set(kept.files)
