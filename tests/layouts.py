"""Datasets in the reference's on-disk layouts, made from synthetic clips (exact ground truth), for tests and
the ingest bench: what `kind: scannet` and `kind: dl3dv` read (docs/data.md).

Each writer returns what the clip store must hold after the documented conversions, so tests compare array
by array.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from clipstore.scannet import COLOUR_RESOLUTION
from clipstore.synthetic import CLASS_NAMES, SyntheticSpec, render_clip

SCANNET_CLASSES = 20


def scannet_class_names() -> list[str]:
    """The synthetic classes first, padded to the 20 of the layout with classes that never occur."""
    return [*CLASS_NAMES, *(f"unused-{k}" for k in range(SCANNET_CLASSES - len(CLASS_NAMES)))]


def source_intrinsics(matrix: np.ndarray, stored: tuple[int, int],
                      source: tuple[int, int] = COLOUR_RESOLUTION) -> np.ndarray:
    """The 4 x 4 ``intrinsic.txt`` at ``source`` resolution that rescales to ``matrix`` at ``stored``."""
    sy, sx = stored[0] / source[0], stored[1] / source[1]
    out = np.eye(4)
    out[0, 0], out[0, 2] = matrix[0, 0] / sx, (matrix[0, 2] + 0.5) / sx - 0.5
    out[1, 1], out[1, 2] = matrix[1, 1] / sy, (matrix[1, 2] + 0.5) / sy - 0.5
    return out


def camera_to_world(extrinsics: np.ndarray) -> np.ndarray:
    """(S, 4, 4) camera-to-world poses from (S, 3, 4) world-to-camera ``[R | t]``."""
    square = np.tile(np.eye(4), (len(extrinsics), 1, 1))
    square[:, :3] = extrinsics
    return np.linalg.inv(square)


def write_scannet(root: Path, spec: SyntheticSpec, splits: Sequence[str], *, lost_poses: Sequence[int] = (),
                  folder: str | None = None, quality: int = 95) -> dict[str, dict[str, np.ndarray]]:
    """Clips of ``spec`` as processed ScanNet scenes under ``root`` (split k of clip k); the frames of
    ``lost_poses`` get ScanNet's non-finite pose. Returns scene id -> the expected clip-store arrays."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"class_names_{SCANNET_CLASSES}.json").write_text(json.dumps(scannet_class_names()))
    listed: dict[str, list[list[str]]] = {"train": [], "val": []}
    expected = {}
    for clip, split in enumerate(splits):
        scene = f"scene{clip:04d}_00"
        where = folder or split
        listed.setdefault(split, []).append([where, scene])
        expected[scene] = _write_scene(root / where / scene, render_clip(spec, clip), lost_poses, quality)
    for split, entries in listed.items():
        (root / f"{split}.json").write_text(json.dumps(entries))
    return expected


def _write_scene(path: Path, clip: dict[str, np.ndarray], lost_poses: Sequence[int], quality: int) -> dict:
    (path / "frames").mkdir(parents=True)
    for i, frame in enumerate(clip["frames"]):
        Image.fromarray(frame).save(path / "frames" / f"frame_{i:05d}.jpg", quality=quality)
    frames, height, width = clip["instance"].shape
    np.save(path / "instance_masks.npy", clip["instance"].astype(np.uint16))
    poses = camera_to_world(clip["extrinsics"].astype(np.float64)).astype(np.float32)
    poses[list(lost_poses)] = -np.inf
    np.save(path / "poses.npy", poses)
    np.savetxt(path / "intrinsic.txt", source_intrinsics(clip["intrinsics"][0].astype(np.float64), (height, width)))
    counts = np.zeros((frames, SCANNET_CLASSES), dtype=np.int32)
    counts[:, :clip["tag_counts"].shape[1]] = clip["tag_counts"]
    np.save(path / f"tag_pixel_counts_{SCANNET_CLASSES}.npy", counts)
    extrinsics = clip["extrinsics"].astype(np.float32).copy()
    extrinsics[list(lost_poses)] = np.nan
    decoded = np.stack([np.asarray(Image.open(path / "frames" / f"frame_{i:05d}.jpg").convert("RGB"))
                        for i in range(frames)])
    return {"frames": decoded, "instance": clip["instance"], "tag_counts": counts, "extrinsics": extrinsics,
            "intrinsics": clip["intrinsics"]}


def write_dl3dv(root: Path, spec: SyntheticSpec, splits: Sequence[str], *, lengths: Sequence[int] | None = None,
                subset: str = "1K") -> dict[str, dict[str, np.ndarray]]:
    """Clips of ``spec`` as processed DL3DV scenes (``root/{subset}/{hash}.sft``), clip k cut to
    ``lengths[k]`` frames when given. Returns scene hash -> the expected clip-store arrays."""
    (root / subset).mkdir(parents=True, exist_ok=True)
    listed: dict[str, list[list[str]]] = {"train": [], "val": []}
    expected = {}
    for clip, split in enumerate(splits):
        name = f"{clip:04d}" + "ab" * 8
        arrays = render_clip(spec, clip)
        length = len(arrays["frames"]) if lengths is None else lengths[clip]
        arrays = {key: value[:length] for key, value in arrays.items()}
        save_file(dl3dv_tensors(arrays, start=3 * clip), str(root / subset / f"{name}.sft"))
        listed.setdefault(split, []).append([subset, name])
        expected[name] = {key: arrays[key] for key in
                          ("frames", "depth", "points", "confidence", "extrinsics", "intrinsics")}
    for split, entries in listed.items():
        (root / f"{split}.json").write_text(json.dumps(entries))
    return expected


def dl3dv_tensors(clip: dict[str, np.ndarray], start: int = 0) -> dict[str, np.ndarray]:
    """One scene's safetensors tensors in the reference layout from clip-store arrays."""
    return {
        "images": np.ascontiguousarray(clip["frames"].transpose(0, 3, 1, 2)),
        "depthmaps": clip["depth"][..., None].astype(np.float32),
        "pointmaps": clip["points"].astype(np.float32),
        "confmaps": clip["confidence"][..., None].astype(np.float32),
        "intrinsic": clip["intrinsics"].astype(np.float32),
        "extrinsic": clip["extrinsics"].astype(np.float32),
        "start_idx": np.array([start], dtype=np.int64),
    }
