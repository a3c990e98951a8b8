"""The reference's processed DL3DV with VGGT pseudo ground truth (geometry), read as it is on disk
(docs/data.md).

Layout: ``root/train.json`` and ``root/val.json`` (optionally ``test.json``) list ``[subset, hash]`` pairs;
scene ``root/{subset}/{hash}.sft`` is a safetensors file with ``images`` (S, 3, H, W) uint8,
``depthmaps`` (S, H, W, 1) float32, ``pointmaps`` (S, H, W, 3) float32 in the first frame's world,
``confmaps`` (S, H, W, 1) float32 (VGGT depth confidence, >= 1), ``intrinsic`` (S, 3, 3), ``extrinsic``
(S, 3, 4) world-to-camera (OpenCV) and ``start_idx`` (the scene frame the clip starts at).

Only the kept frames are read (safetensors slices), so ``max_frames`` and ``ground_truth: query`` also
save reading time. Conversions: channels-first images become (S, H, W, 3); the trailing axis of depth and
confidence is dropped; everything else is stored as it is. Non-finite ground truth is a bad clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from clipstore.errors import BadClip
from clipstore.ingest import ClipEntry, ClipShape, DatasetReader, read_split_lists, require_finite

# key -> (dtype as safetensors names it, shape after the frame axis with H, W as "H", "W")
TENSORS: dict[str, tuple[str, tuple[int | str, ...]]] = {
    "images": ("U8", (3, "H", "W")),
    "depthmaps": ("F32", ("H", "W", 1)),
    "pointmaps": ("F32", ("H", "W", 3)),
    "confmaps": ("F32", ("H", "W", 1)),
    "intrinsic": ("F32", (3, 3)),
    "extrinsic": ("F32", (3, 4)),
}


class DL3DVReader(DatasetReader):
    kind = "dl3dv"
    arrays = ("frames", "depth", "points", "confidence", "extrinsics", "intrinsics")

    def entries(self) -> list[ClipEntry]:
        return [ClipEntry(name, split, self.root / subset / f"{name}.sft")
                for split, listed in read_split_lists(self.root, self.kind) for subset, name in listed]

    def class_names(self) -> list[str]:
        return []

    def shape(self, entry: ClipEntry) -> ClipShape:
        if not entry.path.is_file():
            raise BadClip(f"split entry {entry.id!r} ({entry.split}.json) has no scene file {entry.path}")
        with _open(entry.path) as tensors:
            frames, height, width = _check_layout(entry.path, tensors)
            start = _start_index(entry.path, tensors)
        return ClipShape(frames, height, width, {"start_idx": start})

    def read(self, entry: ClipEntry, frames: np.ndarray, ground_truth_frames: np.ndarray) -> dict[str, np.ndarray]:
        path = entry.path
        with _open(path) as tensors:
            images = _rows(tensors, "images", frames)
            truth = {key: _rows(tensors, key, ground_truth_frames)
                     for key in ("depthmaps", "pointmaps", "confmaps", "intrinsic", "extrinsic")}
        for key, values in truth.items():
            require_finite(values, f"{path}: {key}")
        if (truth["confmaps"] < 1).any():
            raise BadClip(f"{path}: confmaps below 1 ({float(truth['confmaps'].min()):.3g}); VGGT confidence is >= 1")
        return {
            "frames": np.ascontiguousarray(images.transpose(0, 2, 3, 1)),
            "depth": truth["depthmaps"][..., 0],
            "points": truth["pointmaps"],
            "confidence": truth["confmaps"][..., 0],
            "extrinsics": truth["extrinsic"],
            "intrinsics": truth["intrinsic"],
        }


def _open(path: Path):
    try:
        return safe_open(str(path), framework="np")
    except (SafetensorError, OSError) as err:
        raise BadClip(f"{path}: not a readable safetensors file ({err})") from None


def _check_layout(path: Path, tensors) -> tuple[int, int, int]:
    """(frames, H, W) after checking every tensor's presence, dtype and shape against :data:`TENSORS`."""
    keys = set(tensors.keys())
    missing = [k for k in (*TENSORS, "start_idx") if k not in keys]
    if missing:
        raise BadClip(f"{path}: missing tensor(s) {missing}; it has {sorted(keys)}")
    images = tensors.get_slice("images").get_shape()
    if len(images) != 4:
        raise BadClip(f"{path}: images has shape {tuple(images)}, expected (S, 3, H, W)")
    frames, height, width = images[0], images[2], images[3]
    sizes = {"H": height, "W": width}
    for key, (dtype, trailing) in TENSORS.items():
        tensor = tensors.get_slice(key)
        expected = (frames, *(sizes.get(d, d) for d in trailing))
        if tuple(tensor.get_shape()) != expected:
            raise BadClip(f"{path}: {key} has shape {tuple(tensor.get_shape())}, expected {expected}")
        if tensor.get_dtype() != dtype:
            raise BadClip(f"{path}: {key} has dtype {tensor.get_dtype()}, expected {dtype}")
    return frames, height, width


def _start_index(path: Path, tensors) -> int:
    start = np.asarray(tensors.get_tensor("start_idx")).reshape(-1)
    if start.size != 1 or start.dtype.kind not in "iu":
        raise BadClip(f"{path}: start_idx must be one integer, got {start.dtype} of shape {start.shape}")
    return int(start[0])


def _rows(tensors, key: str, frames: Sequence[int]) -> np.ndarray:
    """Rows ``frames`` of tensor ``key``: one slice when they are contiguous, else one per frame."""
    frames = [int(f) for f in frames]
    tensor = tensors.get_slice(key)
    if frames == list(range(frames[0], frames[0] + len(frames))):
        return np.asarray(tensor[frames[0]:frames[-1] + 1])
    return np.concatenate([np.asarray(tensor[f:f + 1]) for f in frames])
