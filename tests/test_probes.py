"""Probes on exact ground truth: an oracle source scores near its ceiling, noise stays near chance.

These catch alignment bugs (frame_index, grid orientation, clip order) that unit tests of metrics miss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstore import open_clip_store
from clipstore.generate import write_synthetic_store
from clipstore.grid import area_matrix, bilinear_matrix, resample
from clipstore.synthetic import SyntheticSpec
from extractors import ClipFeatures, FeatureStoreWriter
from probes import aggregate, depth, tagging
from probes.job import run_probe
from probes.metrics import depth_metrics, tagging_metrics
from probes.sources import FeatureSource, SourceId

GRID = (8, 8)
FRAMES = np.array([0, 2, 4])  # a source that covers every other clip frame, like a temporally strided model


@pytest.fixture(scope="module")
def probe_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticSpec(clips=48, frames=5, height=32, width=32, seed=11, val_fraction=0.25)
    return write_synthetic_store(tmp_path_factory.mktemp("probe") / "p.zarr", spec, progress=False)


def _write_source(path: Path, store_path: Path, make) -> FeatureSource:
    """A one-shard store whose features for clip c are ``make(clip arrays at FRAMES)``."""
    store = open_clip_store(store_path)
    clips = list(range(len(store)))
    writer = FeatureStoreWriter(path, clip_index=clips, layers=[0], fingerprint={})
    for position, clip in enumerate(clips):
        arrays = {n: store.zarr_array(n)[clip][FRAMES] for n in ("depth", "semantic")}
        writer.write_clip(position, ClipFeatures({0: make(arrays, clip)}, FRAMES))
    writer.finish({"model": path.stem, "family": "test", "paradigm": "baseline", "timestep": None,
                   "random_init": False, "layers": [0]})
    return FeatureSource(SourceId(path.stem, "none", 0), [path])


def _oracle(arrays: dict, clip: int) -> np.ndarray:
    log_depth, _ = depth.log_depth_targets(arrays["depth"], GRID)
    onehot = (arrays["semantic"][..., None] == np.arange(6)).astype(np.float32)
    return np.concatenate([log_depth[..., None], resample(onehot, GRID, axes=(1, 2))], axis=-1)


def _noise(arrays: dict, clip: int) -> np.ndarray:
    return np.random.default_rng(clip).standard_normal((len(FRAMES), *GRID, 7)).astype(np.float32)


@pytest.fixture(scope="module")
def sources(probe_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, FeatureSource]:
    root = tmp_path_factory.mktemp("sources")
    return {name: _write_source(root / f"{name}.zarr", probe_store, make)
            for name, make in (("oracle", _oracle), ("noise", _noise))}


def _splits(store_path: Path):
    store = open_clip_store(store_path)
    return store, store.clips_in("train"), store.clips_in("val")


def _grid_ceiling(store_path: Path, val: np.ndarray) -> float:
    """AbsRel of the ground truth itself, area-pooled to the grid and upsampled: the best a grid can do."""
    gt = open_clip_store(store_path).select("depth", val, FRAMES)
    gt = gt.reshape(-1, *gt.shape[2:])
    pooled = np.exp(depth.log_depth_targets(gt, GRID)[0])
    up = resample(pooled, gt.shape[1:], axes=(1, 2), method="bilinear")
    return float(np.mean([depth_metrics(p, g, np.isfinite(g))["AbsRel"] for p, g in zip(up, gt)]))


def test_depth_oracle_reaches_grid_ceiling_and_noise_does_not(probe_store: Path, sources) -> None:
    store, train, val = _splits(probe_store)
    settings = dict(depth.DEFAULTS)
    oracle = depth.run(sources["oracle"], store, train, val, settings, seed=0).metrics
    noise = depth.run(sources["noise"], store, train, val, settings, seed=0).metrics
    ceiling = _grid_ceiling(probe_store, val)
    assert oracle["AbsRel"] <= ceiling + 0.01, (oracle, ceiling)
    assert oracle["delta1"] > 0.9
    assert noise["AbsRel"] > 3 * oracle["AbsRel"] and noise["delta1"] < 0.7


def test_tagging_oracle_is_near_perfect_and_noise_near_chance(probe_store: Path, sources) -> None:
    store, train, val = _splits(probe_store)
    options = {"min_pixels": 20, "min_frames": 1}
    oracle = tagging.run(sources["oracle"], store, train, val, dict(tagging.DEFAULTS), 0, **options).metrics
    noise = tagging.run(sources["noise"], store, train, val, dict(tagging.DEFAULTS), 0, **options).metrics
    assert oracle["mAP"] > 0.95, oracle
    assert noise["mAP"] < oracle["mAP"] - 0.15, (noise, oracle)
    # the oracle's class-fraction channels, used directly as scores, rank the labels perfectly: features
    # and labels refer to the same views of the same clips
    counts = store.select("tag_counts", val, FRAMES)
    fractions = sources["oracle"].pooled(val)[:, 1:]
    labels = tagging.tag_labels(counts, **options)
    assert tagging_metrics(labels, fractions / fractions.max())["mAP"] == 1.0


def test_tag_labels_apply_pixel_and_frame_thresholds() -> None:
    counts = np.array([[[150, 0], [60, 0], [0, 5]]])  # one clip, 3 frames, 2 classes
    np.testing.assert_array_equal(tagging.tag_labels(counts, 200, 1), [[1, 0]])
    np.testing.assert_array_equal(tagging.tag_labels(counts, 200, 3), [[0, 0]])
    np.testing.assert_array_equal(tagging.tag_labels(counts, 5, 1), [[1, 1]])


def test_run_probe_writes_one_complete_directory(probe_store: Path, sources, tmp_path: Path) -> None:
    out = tmp_path / "probes" / "linear"
    source = sources["oracle"]
    record = run_probe(dataset="p", clip_store=str(probe_store), shard_paths=[str(p) for p in source.store.paths],
                       source=str(source.id), task="depth", probe="linear", settings=dict(depth.DEFAULTS),
                       task_options={}, seed=0, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "predictions.npz", "weights.npz"]
    assert not out.with_name("linear.partial").exists()
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["metrics"] == record["metrics"] and stored["source"] == "oracle@none@L0"
    assert stored["feature_grid"] == list(GRID) and stored["layer"] == 0
    predictions = np.load(out / "predictions.npz")
    np.testing.assert_array_equal(predictions["frame_index"], FRAMES)


def test_summary_tables_label_random_init(tmp_path: Path) -> None:
    records = [
        {"dataset": "d", "source": "a@none@L0", "model": "a", "family": "pixels", "paradigm": "baseline",
         "random_init": False, "timestep": None, "layer": 0, "task": "depth", "probe": "linear",
         "metrics": {"AbsRel": 0.5, "delta1": 0.2}},
        {"dataset": "d", "source": "w@t500@L1", "model": "w", "family": "wan", "paradigm": "vgm",
         "random_init": True, "timestep": 500, "layer": 1, "task": "depth", "probe": "linear",
         "metrics": {"AbsRel": 0.25, "delta1": 0.6}},
    ]
    rows, columns = aggregate.summary_rows(records), aggregate.metric_columns(records)
    assert columns == ["depth/linear/AbsRel", "depth/linear/delta1"]
    aggregate.write_csv(rows, columns, tmp_path / "s.csv")
    aggregate.write_markdown(rows, columns, tmp_path / "s.md")
    text = (tmp_path / "s.md").read_text()
    assert "w@t500@L1 (random-init)" in text and "depth/linear/AbsRel ↓" in text
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
