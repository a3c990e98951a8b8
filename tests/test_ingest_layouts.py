"""The reference's ScanNet and DL3DV layouts brought in: array by array equal to the source after the documented
conversions, storing less (max_frames, ground_truth: query), clips of different lengths, and one named line
for every kind of bad data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clipstore import StoreError, open_clip_store
from clipstore.dl3dv import DL3DVReader
from clipstore.errors import BadClip
from clipstore.ingest import StoreOptions, ingest
from clipstore.scannet import ScanNetReader, rescale_intrinsics, world_to_camera
from clipstore.synthetic import SyntheticSpec
from probes.data import Sample
from probes.sampler import FrameProtocol
from probes.tasks import task_spec
from tests.layouts import scannet_class_names, write_dl3dv, write_scannet

SPEC = SyntheticSpec(clips=4, frames=13, height=24, width=32, seed=5)
SPLITS = ["train", "train", "val", "train"]
ORDER = [0, 1, 3, 2]  # store order: train.json's scenes, then val.json's


@pytest.fixture(scope="module")
def scannet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scannet")
    return root, write_scannet(root, SPEC, SPLITS, lost_poses=[2])


@pytest.fixture(scope="module")
def dl3dv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dl3dv")
    return root, write_dl3dv(root, SPEC, SPLITS, lengths=[13, 9, 13, 6])


def _copy(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "copy"))


# --- ScanNet ----------------------------------------------------------------------------------------------

def test_scannet_store_equals_the_scenes_after_conversion(scannet, tmp_path: Path) -> None:
    root, expected = scannet
    store = open_clip_store(ingest(tmp_path / "s.zarr", ScanNetReader(root), threads=2, progress=False))
    assert store.clip_ids == [list(expected)[i] for i in ORDER] and list(store.splits) == [SPLITS[i] for i in ORDER]
    assert store.class_names == scannet_class_names()
    assert store.attrs["source_kind"] == "scannet" and store.frame_counts.tolist() == [13] * 4
    assert sorted(store.group.array_keys()) == sorted([*ScanNetReader.arrays, "frame_count"])
    for scene, arrays in expected.items():
        clip = store.clip_ids.index(scene)
        for name, values in arrays.items():
            stored = store.zarr_array(name)[clip]
            assert stored.dtype == np.dtype({"frames": "uint8", "instance": "int32", "tag_counts": "int32"}
                                            .get(name, "float32")), name
            np.testing.assert_allclose(stored, values, rtol=0, atol=2e-4, err_msg=name)  # NaN where lost
    assert np.isnan(store.zarr_array("extrinsics")[0, 2]).all()  # a lost pose is invalid, never identity


def test_pose_inversion_and_intrinsics_rescaling_follow_their_conventions() -> None:
    rotation = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, [1.0, 2, 3]  # camera at (1, 2, 3) in the world
    extrinsics = world_to_camera(np.stack([pose, np.full((4, 4), -np.inf)]))
    np.testing.assert_allclose(extrinsics[0, :, :3] @ [1.0, 2, 3] + extrinsics[0, :, 3], 0, atol=1e-12)
    assert np.isnan(extrinsics[1]).all()
    colour = np.array([[1170.0, 0, 647.5, 0], [0, 1170, 483.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    scaled = rescale_intrinsics(colour, (968, 1296), (484, 648))  # half size: the image centre stays the centre
    np.testing.assert_allclose(scaled, [[585, 0, 323.5], [0, 585, 241.5], [0, 0, 1]])


def test_storing_less_keeps_the_right_frames_and_probes_still_sample_them(scannet, tmp_path: Path) -> None:
    root, expected = scannet
    options = StoreOptions(max_frames=9, ground_truth="query")
    store = open_clip_store(ingest(tmp_path / "q.zarr", ScanNetReader(root), options, progress=False))
    assert store.zarr_array("frames").shape[1] == 9 and store.frame_counts.tolist() == [9] * 4
    assert store.attrs["ground_truth_frames"] == [0, 1, 5]
    assert store.frame_map("instance").tolist() == [0, 1, 5] and store.zarr_array("instance").shape[1] == 3
    first = next(iter(expected.values()))
    np.testing.assert_array_equal(store.zarr_array("frames")[0], first["frames"][:9])  # RGB stays complete
    np.testing.assert_array_equal(store.select("instance", [0], [0, 5])[0], first["instance"][[0, 5]])
    with pytest.raises(StoreError, match=r"keeps ground truth at frames \[0, 1, 5\] only .* frame\(s\) \[2\]"):
        store.select("instance", [0], [0, 2])
    with pytest.raises(StoreError, match="has 9 frames; frame.s. .11."):
        store.select("frames", [0], [11])
    protocol = FrameProtocol(views=2, min_gap=4, window=9, snap_stride=4)
    targets = task_spec("tagging").make_targets({"min_pixels": 1, "min_frames": 1})
    for clip, views in protocol.validation_views(store.clips_in("val"), store.frame_counts):
        assert set(views.tolist()) <= {0, 1, 5}
        counts = first["tag_counts"]  # the label of the sample comes from the kept frames
        assert targets(store, Sample(clip, views))["labels"].shape == (counts.shape[1],)


def _mutations(root: Path) -> dict[str, tuple[Callable[[], None], str]]:
    scene = root / "val" / "scene0002_00"
    return {
        "missing scene": (lambda: shutil.rmtree(scene), r"has no scene folder .*scene0002_00"),
        "missing file": (lambda: (scene / "poses.npy").unlink(), r"scene0002_00/poses\.npy is missing"),
        "missing frame": (lambda: (scene / "frames" / "frame_00004.jpg").unlink(),
                          r"scene0002_00/frames: frame_00004\.jpg is missing"),
        "corrupt jpeg": (lambda: (scene / "frames" / "frame_00003.jpg").write_bytes(b"\xff\xd8\xff\xe0junk"),
                         r"frame_00003\.jpg: corrupt image"),
        "mask dtype": (lambda: np.save(scene / "instance_masks.npy", np.zeros((13, 24, 32), np.float32)),
                       r"instance_masks\.npy: dtype float32, expected uint16"),
        "counts shape": (lambda: np.save(scene / "tag_pixel_counts_20.npy", np.zeros((13, 19), np.int32)),
                         r"tag_pixel_counts_20\.npy: shape \(13, 19\), expected \(13, 20\)"),
        "frames vs masks": (lambda: np.save(scene / "instance_masks.npy", np.zeros((12, 24, 32), np.uint16)),
                            r"poses\.npy: shape \(13, 4, 4\), expected \(12, 4, 4\)"),
        "intrinsics": (lambda: (scene / "intrinsic.txt").write_text("1 2 3\n"), r"intrinsic\.txt"),
    }


@pytest.mark.parametrize("case", sorted(_mutations(Path("."))))
def test_bad_scannet_scene_is_named_and_can_be_skipped(case: str, scannet, tmp_path: Path) -> None:
    root = _copy(scannet[0], tmp_path)
    mutate, message = _mutations(root)[case]
    mutate()
    with pytest.raises(BadClip, match=message):
        ingest(tmp_path / "bad.zarr", ScanNetReader(root), progress=False)
    assert not (tmp_path / "bad.zarr").exists()  # nothing that could be read as complete
    store = open_clip_store(ingest(tmp_path / "skip.zarr", ScanNetReader(root), StoreOptions(on_bad_clip="skip"),
                                   progress=False))
    assert store.frame_counts.tolist() == [13, 13, 13, 0]
    assert list(store.skipped) == ["scene0002_00"] and len(store.clips_in("val")) == 0


@pytest.mark.parametrize(("content", "message"), [
    ("[[\"train\"]]", r"train\.json: entry 0 is \['train'\], expected a \[folder, name\] pair"),
    ("{", r"train\.json: not valid JSON"),
])
def test_bad_split_file_is_named(content: str, message: str, scannet, tmp_path: Path) -> None:
    root = _copy(scannet[0], tmp_path)
    (root / "train.json").write_text(content)
    with pytest.raises(StoreError, match=message):
        ingest(tmp_path / "bad.zarr", ScanNetReader(root), progress=False)
    (root / "train.json").unlink()
    with pytest.raises(StoreError, match="split file train.json is missing"):
        ScanNetReader(root).entries()


# --- DL3DV ------------------------------------------------------------------------------------------------

def test_dl3dv_store_equals_the_scenes_and_keeps_each_clip_length(dl3dv, tmp_path: Path) -> None:
    root, expected = dl3dv
    store = open_clip_store(ingest(tmp_path / "d.zarr", DL3DVReader(root), threads=2, progress=False))
    assert store.clip_ids == [list(expected)[i] for i in ORDER] and store.class_names == []
    assert store.frame_counts.tolist() == [13, 9, 6, 13]  # clip 3 (6 frames, train) comes before val
    assert store.attrs["clip_metadata"][store.clip_ids[1]] == {"start_idx": 3}
    for scene, arrays in expected.items():
        clip = store.clip_ids.index(scene)
        own, _ = store.clip_arrays(clip, arrays)
        for name, values in arrays.items():
            np.testing.assert_array_equal(own[name], values.astype(own[name].dtype), err_msg=name)
    assert np.isnan(store.zarr_array("depth")[2, 6:]).all()  # past a clip's frames: the fill, never data
    with pytest.raises(StoreError, match="has 6 frames"):
        store.select("depth", [2], [0, 7])
    protocol = FrameProtocol(views=2, min_gap=4, window=13, snap_stride=4)
    for clip, views in protocol.training_views(range(4), store.frame_counts, seed=0, epoch=0, draws=20):
        assert views.max() < store.frame_counts[clip]


def test_dl3dv_query_ground_truth_is_smaller_and_read_through_its_map(dl3dv, tmp_path: Path) -> None:
    root, expected = dl3dv
    full = ingest(tmp_path / "full.zarr", DL3DVReader(root), progress=False)
    query = open_clip_store(ingest(tmp_path / "q.zarr", DL3DVReader(root), StoreOptions(ground_truth="query"),
                                   progress=False))
    assert query.frame_map("points").tolist() == [0, 1, 5, 9]
    first = next(iter(expected.values()))
    np.testing.assert_array_equal(query.select("points", [0], [1, 9])[0], first["points"][[1, 9]])
    _, maps = query.clip_arrays(2, ["depth", "frames"])  # a 6-frame clip: ground truth at 0, 1 and 5
    assert maps["depth"].tolist() == [0, 1, 5] and maps["frames"].tolist() == list(range(6))
    assert _size(tmp_path / "q.zarr") < 0.7 * _size(full)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _rewrite(path: Path, change: Callable[[dict], None]) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def _dl3dv_mutations(scene: Path) -> dict[str, tuple[Callable[[], None], str]]:
    def nan_depth(t: dict) -> None:
        t["depthmaps"][2, 3, 4] = np.nan

    return {
        "missing file": (lambda: scene.unlink(), r"has no scene file .*\.sft"),
        "missing tensor": (lambda: _rewrite(scene, lambda t: t.pop("confmaps")), r"missing tensor\(s\) \['confmaps'\]"),
        "dtype": (lambda: _rewrite(scene, lambda t: t.update(images=t["images"].astype(np.float32))),
                  r"images has dtype F32, expected U8"),
        "shape": (lambda: _rewrite(scene, lambda t: t.update(depthmaps=t["depthmaps"][..., 0])),
                  r"depthmaps has shape \(13, 24, 32\), expected \(13, 24, 32, 1\)"),
        "non-finite": (lambda: _rewrite(scene, nan_depth), r"depthmaps: 1 non-finite value"),
        "truncated": (lambda: scene.write_bytes(scene.read_bytes()[:200]), r"not a readable safetensors file"),
    }


@pytest.mark.parametrize("case", sorted(_dl3dv_mutations(Path("x"))))
def test_bad_dl3dv_scene_is_named_and_can_be_skipped(case: str, dl3dv, tmp_path: Path) -> None:
    root = _copy(dl3dv[0], tmp_path)
    scene = root / "1K" / json.loads((root / "val.json").read_text())[0][1]
    scene = scene.with_suffix(".sft")
    mutate, message = _dl3dv_mutations(scene)[case]
    mutate()
    with pytest.raises(BadClip, match=message):
        ingest(tmp_path / "bad.zarr", DL3DVReader(root), progress=False)
    assert not (tmp_path / "bad.zarr").exists()
    store = open_clip_store(ingest(tmp_path / "skip.zarr", DL3DVReader(root), StoreOptions(on_bad_clip="skip"),
                                   progress=False))
    assert store.frame_counts.tolist() == [13, 9, 6, 0] and scene.stem in store.skipped


def test_min_frames_drops_short_clips_and_killed_ingest_resumes(dl3dv, tmp_path: Path) -> None:
    root = dl3dv[0]
    store = open_clip_store(ingest(tmp_path / "m.zarr", DL3DVReader(root),
                                   StoreOptions(min_frames=8, on_bad_clip="skip"), progress=False))
    assert store.frame_counts.tolist() == [13, 9, 0, 13]
    assert "fewer than min_frames=8" in next(iter(store.skipped.values()))

    class Killed(RuntimeError):
        pass

    reader, reads = DL3DVReader(root), []
    original = reader.read

    def dies_on_third(entry, frames, truth):
        if len(reads) == 2:
            raise Killed
        reads.append(entry.id)
        return original(entry, frames, truth)

    reader.read = dies_on_third
    with pytest.raises(Killed):
        ingest(tmp_path / "r.zarr", reader, progress=False)
    assert not (tmp_path / "r.zarr").exists()
    reader.read = lambda entry, frames, truth: (reads.append(entry.id), original(entry, frames, truth))[1]
    resumed = open_clip_store(ingest(tmp_path / "r.zarr", reader, progress=False))
    assert len(reads) == 4 and resumed.frame_counts.tolist() == [13, 9, 6, 13]
