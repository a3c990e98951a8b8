"""Fused sources: frame alignment, grid resampling, per-branch LayerNorm, materialised stores, config checks."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.base import ClipFeatures
from extractors.featurestore import FeatureStoreWriter, open_feature_store
from extractors.ids import SourceId
from probes.fusion import Fusion, FusedSource, FusionError, fuse_views, write_fused_store
from workflow.planning import PlanError, WorkflowPlan, validate_config
from probes.sampler import SamplerError
from probes.sources import FeatureSource, open_source, spec_stores
from tests.conftest import REPO

CLIPS = [0, 1, 2]
# A video model's latent frames (0, then 1 + 4k) against a VLM's query frames, on different grids.
VGM = {"frames": [0, 1, 5, 9, 13], "grid": (4, 6), "channels": 5}
VLM = {"frames": [0, 1, 5, 9], "grid": (2, 3), "channels": 3}


def _write_branch(path: Path, name: str, spec: dict, seed: int, offset: float = 0.0) -> FeatureSource:
    writer = FeatureStoreWriter(path, clip_index=CLIPS, layers=(0,), fingerprint={"model": name})
    rng = np.random.default_rng(seed)
    for position in writer.pending:
        values = rng.normal(offset, 3.0, (len(spec["frames"]), *spec["grid"], spec["channels"]))
        writer.write_clip(position, ClipFeatures({0: values}, np.asarray(spec["frames"])))
    writer.finish({"model": name, "family": "test", "paradigm": "vgm" if name == "vgm" else "vlm",
                   "timestep": None, "seed": 0, "random_init": name == "vgm", "checkpoint": None})
    return FeatureSource(SourceId(name, "none", 0), [path])


@pytest.fixture(scope="module")
def branches(tmp_path_factory: pytest.TempPathFactory) -> list[FeatureSource]:
    root = tmp_path_factory.mktemp("fusion")
    return [_write_branch(root / "vgm.zarr", "vgm", VGM, 1, offset=4.0),
            _write_branch(root / "vlm.zarr", "vlm", VLM, 2)]


def _fusion(mode: str, grid: tuple[int, int] | None = None, materialise: bool = False) -> Fusion:
    return Fusion("vgm+vlm", (SourceId("vgm", "none", 0), SourceId("vlm", "none", 0)), mode, grid, materialise)


def test_fusion_keeps_the_frames_every_branch_has_on_the_smallest_grid(branches) -> None:
    fused = FusedSource(_fusion("concat"), branches)
    assert fused.frame_index.tolist() == [0, 1, 5, 9]
    assert fused.grid == (2, 3) and fused.channels == 8
    views = fused.views(1, [0, 9])
    assert views.shape == (2, 2, 3, 8) and views.dtype == np.float32
    # 4x6 -> 2x3 is an integer ratio: exactly adaptive average pooling, here by torch's own
    vgm = torch.from_numpy(branches[0].views(1, [0, 9])).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.adaptive_avg_pool2d(vgm, (2, 3)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(views[..., :5], pooled.astype(np.float16), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(views[..., 5:], branches[1].views(1, [0, 9]))  # already on the grid


def test_fractional_grid_ratio_averages_areas_exactly(branches) -> None:
    fused = FusedSource(_fusion("concat", grid=(3, 4)), branches)
    views = fused.views(0, [5])
    assert views.shape == (1, 3, 4, 8)
    # area averaging over equal-area cells keeps each branch's mean over the frame
    for part, branch in ((views[..., :5], branches[0]), (views[..., 5:], branches[1])):
        np.testing.assert_allclose(part.mean(axis=(1, 2)), branch.views(0, [5]).mean(axis=(1, 2)), atol=2e-2)


def test_lnconcat_normalises_each_branch_per_token(branches) -> None:
    views = FusedSource(_fusion("lnconcat"), branches).views(2, [0, 1, 5, 9])
    for part in (views[..., :5], views[..., 5:]):
        np.testing.assert_allclose(part.mean(axis=-1), 0.0, atol=5e-3)
        np.testing.assert_allclose(part.var(axis=-1), 1.0, atol=5e-3)
    # the same as torch's LayerNorm without affine parameters, eps 1e-6, on the area-averaged branch
    raw = fuse_views([branches[0].views(2, [0])], (2, 3), "concat")
    expected = torch.nn.functional.layer_norm(torch.from_numpy(raw), (5,), eps=1e-6).numpy()
    np.testing.assert_allclose(views[:1, ..., :5], expected, atol=2e-3)


def test_a_frame_some_branch_lacks_is_a_named_error(branches) -> None:
    fused = FusedSource(_fusion("concat"), branches)
    with pytest.raises(SamplerError, match=r"source 'vgm\+vlm@none@L0' has no feature frame for clip frame\(s\) \[13\]"):
        fused.views(0, [0, 13])


def test_branches_without_a_shared_frame_are_refused(tmp_path: Path, branches) -> None:
    late = _write_branch(tmp_path / "late.zarr", "late", {"frames": [2, 3], "grid": (2, 3), "channels": 2}, 3)
    fusion = Fusion("x", (SourceId("vgm", "none", 0), SourceId("late", "none", 0)), "concat")
    with pytest.raises(FusionError, match=r"fusion 'x': its sources share no frame \(vgm@none@L0 has clip frames "
                                          r"\[0, 1, 5, 9, 13\]; late@none@L0 has clip frames \[2, 3\]\)"):
        FusedSource(fusion, [branches[0], late])


@pytest.mark.parametrize("mode", ["concat", "lnconcat"])
def test_materialised_fusion_equals_the_fusion_on_the_fly(tmp_path: Path, branches, mode: str) -> None:
    on_the_fly = FusedSource(_fusion(mode, materialise=True), branches)
    path = write_fused_store(on_the_fly, tmp_path / "shard-0.zarr", clip_index=CLIPS, dataset="d", progress=False)
    stored = FeatureSource(SourceId("vgm+vlm", "none", 0), [path])
    np.testing.assert_array_equal(stored.frame_index, on_the_fly.frame_index)
    for clip in CLIPS:
        np.testing.assert_array_equal(stored.views(clip, [0, 1, 5, 9]), on_the_fly.views(clip, [0, 1, 5, 9]))
    store = open_feature_store([path])
    assert store.shards[0]["layer_0"].dtype == np.float16 and store.clip_index.tolist() == CLIPS
    attrs = store.attrs
    assert attrs["paradigm"] == "fusion" and attrs["random_init"] is True
    assert attrs["fusion"] == {"name": "vgm+vlm", "sources": ["vgm@none@L0", "vlm@none@L0"], "mode": mode,
                               "grid": [2, 3], "materialise": True, "eps": 1e-6}
    assert [b["source"] for b in attrs["branches"]] == ["vgm@none@L0", "vlm@none@L0"]


def test_source_specs_open_stored_and_fused_sources(branches) -> None:
    stored = [{"id": str(b.id), "stores": [str(p) for p in b.store.paths]} for b in branches]
    spec = {"id": "vgm+vlm@none@L0", "fusion": _fusion("lnconcat").to_json(), "branches": stored}
    fused = open_source(spec)
    assert isinstance(fused, FusedSource) and fused.channels == 8
    assert spec_stores(spec) == [p for s in stored for p in s["stores"]]
    assert open_source(stored[1]).views(0, [1]).shape == (1, 2, 3, 3)


# --- the config -----------------------------------------------------------------------------------------
CONFIG = {
    "datasets": {"d": {"kind": "synthetic", "clips": 8, "frames": 5, "height": 32, "width": 32}},
    "models": {
        "pixels": {"family": "pixels", "layers": "all", "options": {"patch_size": 8}},
        "wan": {"family": "wan-t2v", "checkpoint": "resources/models/tiny-wan-t2v", "layers": [1, 2],
                "timesteps": [250, 500], "options": {"frames": 5, "resolution": [32, 32], "random_init": True}},
        "qwen": {"family": "qwen2.5-vl", "checkpoint": "resources/models/tiny-qwen2.5-vl", "layers": [-1],
                 "options": {"random_init": True}},
    },
    "fusions": {"wan+qwen": {"sources": ["wan@t500@L2", "qwen@none@L2"], "mode": "lnconcat", "materialise": True}},
    "tasks": {"geometry": {"options": {"views": 2, "min_gap": 1, "window": 2, "snap_stride": 1},
                           "probes": {"linear": {}, "light": {"models": ["wan+qwen"]}}}},
}


def _plan(**changes) -> WorkflowPlan:
    config = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        config["fusions"][key] = value
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    return WorkflowPlan(config)


def test_fusions_are_sources_of_every_kind_and_can_be_chosen_by_name() -> None:
    plan = _plan()
    assert str(plan.fusions["wan+qwen"].id) == "wan+qwen@none@L0"
    dirs = plan.probe_dirs()
    assert "results/probes/d/geometry/wan+qwen@none@L0/linear" in dirs
    assert [d for d in dirs if d.endswith("/light")] == ["results/probes/d/geometry/wan+qwen@none@L0/light"]
    assert plan.source_spec("d", "wan+qwen@none@L0") == {
        "id": "wan+qwen@none@L0", "stores": ["results/features/d/wan+qwen/none/shard-0.zarr"]}
    on_the_fly = _plan(**{"wan+qwen": {"sources": ["wan@t500@L2", "qwen@none@L2"]}})
    assert on_the_fly.source_spec("d", "wan+qwen@none@L0")["branches"][0]["stores"] == [
        "results/features/d/wan/t500/shard-0.zarr"]


@pytest.mark.parametrize(("fusion", "message"), [
    ({"pixels": {"sources": ["wan@t500@L2", "qwen@none@L2"]}}, "fusion 'pixels': the name is taken by a model"),
    ({"f": {"sources": ["wan@t500@L2", "clip@none@L2"]}},
     "fusion 'f': source 'clip@none@L2' names no configured model"),
    ({"f": {"sources": ["wan@t400@L2", "qwen@none@L2"]}},
     "fusion 'f': source 'wan@t400@L2' is not extracted; model 'wan' provides ['wan@t250@L1', 'wan@t250@L2', "
     "'wan@t500@L1', 'wan@t500@L2']"),
    ({"f": {"sources": ["wan@t500@L2", "wan 2"]}}, "fusion 'f': bad source id 'wan 2'"),
    ({"f": {"sources": ["wan@t500@L2", "wan@t500@L2"]}}, "fusion 'f': needs at least two distinct sources"),
    ({"f/g": {"sources": ["wan@t500@L2", "qwen@none@L2"]}}, "fusion name 'f/g' is not allowed"),
])
def test_bad_fusions_are_config_errors_naming_them(fusion: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace("[", r"\[")):
        _plan(**fusion)


def test_fusion_whose_frames_never_meet_fails_before_any_job() -> None:
    late = {"family": "qwen2.5-vl", "checkpoint": "resources/models/tiny-qwen2.5-vl", "layers": [-1],
            "options": {"random_init": True, "frames": [2, 3]}}
    config = copy.deepcopy(CONFIG)
    config["models"]["late"] = late
    config["fusions"] = {"f": {"sources": ["wan@t500@L2", "late@none@L2"]}}
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    with pytest.raises(PlanError, match=r"dataset 'd': fusion 'f': its sources share no frame \(wan@t500@L2 has "
                                        r"clip frames \[0, 1\]; late@none@L2 has clip frames \[2, 3\]\)"):
        WorkflowPlan(config)
