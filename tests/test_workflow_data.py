"""Real-data layouts through the DAG: a scannet-layout and a dl3dv-layout fixture are brought in, extracted and
probed; a folder of videos is extracted; dataset settings that cannot work fail before any job runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from clipstore import open_clip_store
from clipstore.synthetic import SyntheticSpec
from tests.layouts import write_dl3dv, write_scannet
from tests.test_workflow import snakemake

SPEC = SyntheticSpec(clips=10, frames=9, height=32, width=32, seed=2)
SPLITS = ["train"] * 7 + ["val"] * 3
LENGTHS = [9, 9, 7, 9, 6, 9, 9, 9, 8, 9]  # DL3DV scenes shorter than the rest

# 9-frame clips: two views, frame 0 and one of the query frames 1 and 5
PROTOCOL = {"views": 2, "min_gap": 4, "window": 9, "snap_stride": 4}


def data_config(scannet: Path, dl3dv: Path) -> dict:
    return {
        "seed": 0,
        "datasets": {
            "scannet": {"kind": "scannet", "root": str(scannet), "ground_truth": "query", "threads": 2},
            "dl3dv": {"kind": "dl3dv", "root": str(dl3dv), "ground_truth": "query", "on_bad_clip": "skip"},
        },
        "models": {
            "pixels": {"family": "pixels", "layers": "all", "options": {"patch_size": 8}},
            "wan": {"family": "wan-t2v", "checkpoint": "resources/models/tiny-wan-t2v", "layers": [-1],
                    "timesteps": [500], "options": {"frames": 9, "resolution": [32, 32], "random_init": True,
                                                    "max_text_tokens": 8}},
        },
        "extraction": {"clips_per_shard": 6},
        "tasks": {
            "tagging": {"datasets": ["scannet"], "options": {**PROTOCOL, "min_pixels": 20},
                        "probes": {"linear": {}}},
            "instance": {"datasets": ["scannet"], "options": PROTOCOL, "probes": {"linear": {}}},
            "geometry": {"datasets": ["dl3dv"], "options": PROTOCOL, "probes": {"linear": {}}},
        },
    }


@pytest.fixture(scope="module")
def data_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("layouts")
    write_scannet(base / "scannet", SPEC, SPLITS, lost_poses=[3])
    write_dl3dv(base / "dl3dv", SPEC, SPLITS, lengths=LENGTHS)
    broken = base / "dl3dv" / "1K" / f"{1:04d}{'ab' * 8}.sft"
    broken.write_bytes(b"not a safetensors file")
    workdir = base / "run"
    workdir.mkdir()
    return workdir, snakemake(workdir, data_config(base / "scannet", base / "dl3dv")), broken


@pytest.mark.e2e
def test_scannet_and_dl3dv_layouts_are_extracted_and_probed(data_run) -> None:
    workdir, result, broken = data_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    with open(workdir / "results/tables/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    probed = {(r["dataset"], r["task"], r["source"]) for r in rows}
    for source in ("pixels@none@L0", "wan@t500@L2"):
        assert {("scannet", "tagging", source), ("scannet", "instance", source),
                ("dl3dv", "geometry", source)} <= probed
    assert all(np.isfinite(float(r["value"])) for r in rows if r["metric"] in ("mAP", "T-mIoU", "AbsRel"))
    dl3dv = open_clip_store(workdir / "results/data/dl3dv.zarr")
    assert broken.stem in dl3dv.skipped and dl3dv.frame_counts[dl3dv.clip_ids.index(broken.stem)] == 0
    assert "not a readable safetensors file" in (workdir / "results/logs/dataset/dl3dv.log").read_text()
    assert dl3dv.attrs["ground_truth_frames"] == [0, 1, 5]


@pytest.mark.e2e
def test_short_clips_keep_their_own_feature_frames(data_run) -> None:
    workdir, result, _ = data_run
    assert result.returncode == 0
    from extractors.featurestore import open_feature_store

    clips = open_clip_store(workdir / "results/data/dl3dv.zarr")
    features = open_feature_store(sorted((workdir / "results/features/dl3dv/wan/t500").glob("shard-*.zarr")))
    assert features.frame_index.tolist() == [0, 1, 5]  # 9 frames: latent frames at 0, 1 and 5
    lengths = dict(zip(clips.clip_ids, clips.frame_counts.tolist(), strict=True))
    for clip, count in zip(features.clip_index.tolist(), features.frame_counts.tolist(), strict=True):
        length = lengths[clips.clip_ids[clip]]
        assert count == {0: 0, 6: 2, 7: 2, 8: 2, 9: 3}[length]  # a 6-8 frame clip is fed its first 5 frames


@pytest.mark.e2e
def test_a_folder_of_videos_is_extracted(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for k in range(3):
        _write_video(videos / f"clip{k}.mp4", frames=7 + 2 * k)
    config = data_config(tmp_path, tmp_path)
    config["datasets"] = {"clips": {"kind": "video", "root": str(videos), "frames": 5, "resize": [32, 32]}}
    config["tasks"] = {"tagging": {"datasets": [], "probes": {"linear": {}}}}
    config["models"] = {"pixels": config["models"]["pixels"]}
    target = "results/features/clips/pixels/none/shard-0.zarr"
    result = snakemake(tmp_path, config, target)
    assert result.returncode == 0, result.stderr[-4000:]
    store = open_clip_store(tmp_path / "results/data/clips.zarr")
    assert store.frame_counts.tolist() == [5, 5, 5] and list(store.splits) == ["val"] * 3


def _write_video(path: Path, frames: int) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(frames):
            image = np.full((32, 48, 3), 20 * i, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_dataset_settings_that_cannot_work_fail_before_any_job(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    base = data_config(tmp_path, tmp_path)
    cases = [
        ({"clips": {"kind": "video", "root": str(videos), "classes": 20}},
         "dataset 'clips': kind 'video' takes no ['classes']"),
        ({"clips": {"kind": "scannet", "root": str(videos)}},
         "dataset 'clips': scannet dataset " + str(videos) + ": split file train.json is missing"),
    ]
    for datasets, message in cases:
        config = {**base, "datasets": datasets, "tasks": {"tagging": {"probes": {"linear": {}}}}}
        result = snakemake(tmp_path, config, "-n")
        assert result.returncode != 0 and message in result.stdout + result.stderr, result.stderr[-2000:]
    _write_video(videos / "a.mp4", frames=5)
    config = {**base, "datasets": {"clips": {"kind": "video", "root": str(videos)}},
              "tasks": {"tagging": {"probes": {"linear": {}}}}}
    result = snakemake(tmp_path, config, "-n")
    assert "task 'tagging' needs array(s) ['tag_counts'] that dataset 'clips'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_protocols_are_checked_against_ground_truth_frames_and_clip_lengths(tmp_path: Path) -> None:
    root = tmp_path / "dl3dv"
    write_dl3dv(root, SyntheticSpec(clips=3, frames=9, height=16, width=16), ["train", "train", "val"],
                lengths=[9, 4, 9])
    config = data_config(tmp_path, root)
    config["datasets"] = {"dl3dv": {"kind": "dl3dv", "root": str(root), "ground_truth": "query"}}
    config["tasks"] = {"geometry": {"options": {**PROTOCOL, "snap_stride": 1, "min_gap": 1},
                                    "probes": {"linear": {}}}}
    result = snakemake(tmp_path, config, "-n")
    assert ("the frame protocol can sample frames [2, 3, 4, 6, 7, 8] but the dataset keeps ground truth only "
            "at [0, 1, 5]") in result.stdout + result.stderr
    # once the store exists its clip lengths are known: a 4-frame clip cannot hold two views 4 apart
    config["datasets"]["dl3dv"]["ground_truth"] = "all"
    config["tasks"]["geometry"]["options"] = PROTOCOL
    assert snakemake(tmp_path, config, "results/data/dl3dv.zarr").returncode == 0
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert (f"task 'geometry' on dataset 'dl3dv': frame protocol: 2 views with min_gap 4 need 5 frames, but clip "
            f"'0001{'ab' * 8}' has 4 frames") in result.stdout + result.stderr
    assert json.loads(json.dumps(open_clip_store(tmp_path / "results/data/dl3dv.zarr").attrs["store_options"]))


def test_a_bad_scene_stops_the_dataset_job_with_one_line_and_no_store(tmp_path: Path) -> None:
    root = tmp_path / "scannet"
    write_scannet(root, SyntheticSpec(clips=3, frames=5, height=16, width=16), ["train", "train", "val"])
    (root / "val" / "scene0002_00" / "frames" / "frame_00001.jpg").write_bytes(b"\xff\xd8\xff\xe0junk")
    config = data_config(root, tmp_path)
    config["datasets"] = {"scannet": {"kind": "scannet", "root": str(root)}}
    config["tasks"] = {"tagging": {"options": {**PROTOCOL, "window": 5}, "probes": {"linear": {}}}}
    config["models"] = {"pixels": config["models"]["pixels"]}
    result = snakemake(tmp_path, config, "results/data/scannet.zarr")
    assert result.returncode != 0 and "Error in rule dataset" in result.stdout + result.stderr
    log = (tmp_path / "results/logs/dataset/scannet.log").read_text()
    assert "BadClip: " in log and "scene0002_00/frames/frame_00001.jpg: corrupt image" in log
    assert "Traceback" not in log and not (tmp_path / "results/data/scannet.zarr").exists()


def test_a_clipstore_dataset_with_float_frames_is_refused_before_any_job(tmp_path: Path) -> None:
    import zarr

    from clipstore import write_clip_store
    from clipstore.synthetic import render_clip

    spec = SyntheticSpec(clips=4, frames=5, height=16, width=16)
    path = write_clip_store(tmp_path / "mine.zarr", lambda i: render_clip(spec, i), clip_ids=list("abcd"),
                            splits=["train", "train", "val", "val"], class_names=[str(i) for i in range(6)],
                            frames=5, height=16, width=16, attributes={}, progress=False)
    group = zarr.open_group(path, mode="r+")
    frames = group["frames"][:]
    group.create_array("frames", data=frames.astype(np.float32) / 255, overwrite=True)
    config = data_config(tmp_path, tmp_path)
    config["datasets"] = {"mine": {"kind": "clipstore", "root": str(path)}}
    config["tasks"] = {"tagging": {"options": {**PROTOCOL, "window": 5}, "probes": {"linear": {}}}}
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert "dataset 'mine': " in result.stdout + result.stderr
    assert "array 'frames' has dtype float32, the layout says uint8" in result.stdout + result.stderr
