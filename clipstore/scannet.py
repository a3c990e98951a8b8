"""The reference's processed ScanNet (tagging and instances), read as it is on disk (docs/data.md).

Layout: ``root/train.json`` and ``root/val.json`` (optionally ``test.json``) list ``[folder, scene_id]``
pairs; scene ``root/{folder}/{scene_id}/`` holds ``frames/frame_00000.jpg ...`` (RGB), ``instance_masks.npy``
(S, H, W) uint16 (0 = unannotated; ids consistent across the scene's frames), ``poses.npy`` (S, 4, 4)
camera-to-world (non-finite where ScanNet has no pose), ``intrinsic.txt`` (4 x 4, the colour camera at
ScanNet's 968 x 1296 colour resolution) and ``tag_pixel_counts_20.npy`` (S, 20) int32;
``root/class_names_20.json`` names the 20 classes.

Conversions: poses are inverted to world-to-camera ``[R | t]`` (a non-finite pose stays NaN: invalid, never
identity); intrinsics are rescaled from the source resolution to the stored frames with pixel centres at
integer coordinates (``c' = (c + 0.5) * s - 0.5``, ``f' = f * s``); instance ids are kept (0 = void).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from clipstore.errors import BadClip, StoreError
from clipstore.ingest import ClipEntry, ClipShape, DatasetReader, read_split_lists

COLOUR_RESOLUTION = (968, 1296)  # (H, W) of ScanNet's colour camera, which intrinsic.txt describes


class ScanNetReader(DatasetReader):
    kind = "scannet"
    arrays = ("frames", "instance", "tag_counts", "extrinsics", "intrinsics")

    def __init__(self, root: str | os.PathLike, *, classes: int = 20,
                 intrinsics_resolution: tuple[int, int] | list[int] = COLOUR_RESOLUTION) -> None:
        super().__init__(root)
        self.classes = int(classes)
        self.intrinsics_resolution = tuple(int(v) for v in intrinsics_resolution)
        if len(self.intrinsics_resolution) != 2 or min(self.intrinsics_resolution) < 1:
            raise StoreError(f"scannet: intrinsics_resolution={list(intrinsics_resolution)} must be [H, W]")

    def options(self) -> dict[str, Any]:
        return {"classes": self.classes, "intrinsics_resolution": list(self.intrinsics_resolution)}

    def entries(self) -> list[ClipEntry]:
        return [ClipEntry(scene, split, self.root / folder / scene)
                for split, listed in read_split_lists(self.root, self.kind) for folder, scene in listed]

    def class_names(self) -> list[str]:
        path = self.root / f"class_names_{self.classes}.json"
        try:
            names = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"scannet dataset {self.root}: {path.name} is missing") from None
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}: not valid JSON ({err})") from None
        if not (isinstance(names, list) and len(names) == self.classes and all(isinstance(n, str) for n in names)):
            raise StoreError(f"{path}: expected a list of {self.classes} class names")
        return names

    # --- one scene --------------------------------------------------------------------------------------
    def shape(self, entry: ClipEntry) -> ClipShape:
        if not entry.path.is_dir():
            raise BadClip(f"split entry {entry.id!r} ({entry.split}.json) has no scene folder {entry.path}")
        masks = _npy_header(entry.path / "instance_masks.npy", "uint16", ndim=3)
        frames, height, width = masks.shape
        _npy_header(entry.path / "poses.npy", "float32", shape=(frames, 4, 4))
        _npy_header(entry.path / f"tag_pixel_counts_{self.classes}.npy", "int32", shape=(frames, self.classes))
        files = _frame_files(entry.path / "frames", frames)
        size = _image_size(files[0])
        if size != (height, width):
            raise BadClip(f"{files[0]}: {size[0]}x{size[1]} pixels, instance_masks.npy has {height}x{width}")
        _intrinsics(entry.path / "intrinsic.txt")
        return ClipShape(frames, height, width)

    def read(self, entry: ClipEntry, frames: np.ndarray, ground_truth_frames: np.ndarray) -> dict[str, np.ndarray]:
        files = _frame_files(entry.path / "frames", None)
        masks = np.load(entry.path / "instance_masks.npy", mmap_mode="r")
        height, width = masks.shape[1:]
        rgb = np.stack([_decode(files[int(f)], (height, width)) for f in frames])
        truth = np.asarray(ground_truth_frames, dtype=np.int64)
        poses = np.load(entry.path / "poses.npy", mmap_mode="r")
        counts = np.load(entry.path / f"tag_pixel_counts_{self.classes}.npy", mmap_mode="r")
        colour = rescale_intrinsics(_intrinsics(entry.path / "intrinsic.txt"), self.intrinsics_resolution,
                                    (height, width))
        return {
            "frames": rgb,
            "instance": np.asarray(masks[truth], dtype=np.int32),
            "tag_counts": np.asarray(counts[truth], dtype=np.int32),
            "extrinsics": world_to_camera(np.asarray(poses[truth], dtype=np.float64)).astype(np.float32),
            "intrinsics": np.repeat(colour[None].astype(np.float32), len(truth), axis=0),
        }


def world_to_camera(camera_to_world: np.ndarray) -> np.ndarray:
    """(S, 3, 4) world-to-camera ``[R | t]`` from (S, 4, 4) camera-to-world poses; a pose with any
    non-finite entry (ScanNet's marker for a lost track) becomes all NaN, never identity."""
    out = np.full((len(camera_to_world), 3, 4), np.nan)
    for i, pose in enumerate(camera_to_world):
        if np.isfinite(pose).all():
            out[i] = np.linalg.inv(pose)[:3]
    return out


def rescale_intrinsics(matrix: np.ndarray, source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """3 x 3 pinhole matrix for frames resized from ``source`` to ``target`` (H, W), pixel centres at integer
    coordinates: a pixel's centre u maps to ``(u + 0.5) * s - 0.5``."""
    sy, sx = target[0] / source[0], target[1] / source[1]
    out = np.array(matrix[:3, :3], dtype=np.float64)
    out[0, 0], out[0, 1], out[0, 2] = out[0, 0] * sx, out[0, 1] * sx, (out[0, 2] + 0.5) * sx - 0.5
    out[1, 1], out[1, 2] = out[1, 1] * sy, (out[1, 2] + 0.5) * sy - 0.5
    return out


def _npy_header(path: Path, dtype: str, *, ndim: int | None = None,
                shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The array memory-mapped (headers only), checked against the documented dtype and shape."""
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise BadClip(f"{path} is missing") from None
    except (ValueError, OSError) as err:
        raise BadClip(f"{path}: not a readable .npy file ({err})") from None
    if array.dtype != np.dtype(dtype):
        raise BadClip(f"{path}: dtype {array.dtype}, expected {dtype}")
    if (ndim is not None and array.ndim != ndim) or (shape is not None and array.shape != shape):
        expected = shape if shape is not None else f"{ndim} dimensions"
        raise BadClip(f"{path}: shape {array.shape}, expected {expected}")
    return array


def _frame_files(folder: Path, expected: int | None) -> list[Path]:
    """``frame_00000.jpg ...`` in order, every index present."""
    if not folder.is_dir():
        raise BadClip(f"{folder} is missing")
    files = sorted(folder.glob("frame_*.jpg"))
    if expected is not None:
        names = [f"frame_{i:05d}.jpg" for i in range(expected)]
        present = {f.name for f in files}
        missing = [n for n in names if n not in present]
        if missing or len(files) != expected:
            detail = f"{missing[0]} is missing" if missing else f"{len(files)} frames for {expected} masks"
            raise BadClip(f"{folder}: {detail}")
    return files


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, UnidentifiedImageError) as err:
        raise BadClip(f"{path}: not a readable image ({err})") from None


def _decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise BadClip(f"{path}: corrupt image ({err})") from None
    if rgb.shape[:2] != size:
        raise BadClip(f"{path}: {rgb.shape[0]}x{rgb.shape[1]} pixels, instance_masks.npy has {size[0]}x{size[1]}")
    return rgb


def _intrinsics(path: Path) -> np.ndarray:
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except FileNotFoundError:
        raise BadClip(f"{path} is missing") from None
    except ValueError as err:
        raise BadClip(f"{path}: not a 4x4 matrix of numbers ({err})") from None
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise BadClip(f"{path}: expected a finite 4x4 matrix, got shape {matrix.shape}")
    return matrix
