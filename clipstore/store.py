"""The canonical clip store ``results/data/{dataset}.zarr`` (layout in docs/stores.md).

N clips of T frames of H x W pixels, one Zarr shard per clip and one chunk per frame, so a probe reads
just the views it samples. Datasets without some ground truth simply lack that array; asking for it gives
a :class:`StoreError` naming the store and the array.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from tqdm.auto import tqdm

from clipstore.errors import StoreError
from clipstore.resumable import ResumableStore, open_complete


@dataclass(frozen=True)
class ArraySpec:
    """Per-clip layout of one array: its dims after (clip, frame), dtype and fill value."""

    trailing_dims: tuple[str, ...]
    dtype: str
    fill_value: Any
    columns: int = 0  # matrices only: 4 for [R t], 3 for K

    def trailing_shape(self, height: int, width: int, classes: int) -> tuple[int, ...]:
        sizes = {"y": height, "x": width, "rgb": 3, "xyz": 3, "class": classes, "row": 3, "col": self.columns}
        return tuple(sizes[d] for d in self.trailing_dims)


def _spec(dims: str, dtype: str, fill: Any, columns: int = 0) -> ArraySpec:
    return ArraySpec(tuple(dims.split()), dtype, fill, columns)


CLIP_ARRAYS: dict[str, ArraySpec] = {
    "frames": _spec("y x rgb", "uint8", 0),
    "depth": _spec("y x", "float32", float("nan")),
    "points": _spec("y x xyz", "float32", float("nan")),
    "confidence": _spec("y x", "float32", 0.0),
    "instance": _spec("y x", "int32", 0),
    "semantic": _spec("y x", "int16", -1),
    "tag_counts": _spec("class", "int32", 0),
    "extrinsics": _spec("row col", "float32", float("nan"), columns=4),
    "intrinsics": _spec("row col", "float32", float("nan"), columns=3),
}


def _create_array(group: zarr.Group, name: str, clips: int, frames: int, trailing: tuple[int, ...]) -> None:
    spec = CLIP_ARRAYS[name]
    group.create_array(
        name,
        shape=(clips, frames, *trailing),
        dtype=spec.dtype,
        chunks=(1, 1, *trailing),
        shards=(1, frames, *trailing),
        fill_value=spec.fill_value,
        dimension_names=("clip", "frame", *spec.trailing_dims),
        overwrite=True,
    )


def _check_clip(name: str, value: np.ndarray, expected: tuple[int, ...], clip: str) -> np.ndarray:
    spec = CLIP_ARRAYS[name]
    if value.shape != expected:
        raise StoreError(f"clip {clip!r}: array {name!r} has shape {value.shape}, expected {expected}")
    return np.asarray(value, dtype=spec.dtype)


def write_clip_store(
    path: str | os.PathLike,
    render: Callable[[int], dict[str, np.ndarray]],
    *,
    clip_ids: Sequence[str],
    splits: Sequence[str],
    class_names: Sequence[str],
    frames: int,
    height: int,
    width: int,
    attributes: dict[str, Any],
    arrays: Iterable[str] = tuple(CLIP_ARRAYS),
    progress: bool = True,
) -> Path:
    """Write a complete clip store; ``render(i)`` returns the arrays of clip ``i`` (without the clip axis).

    Crash-safe and resumable (see :mod:`clipstore.resumable`): clips finished by a killed run are kept.
    """
    arrays = tuple(arrays)
    unknown = sorted(set(arrays) - set(CLIP_ARRAYS))
    if unknown:
        raise StoreError(f"{path}: unknown clip-store arrays {unknown}; known: {sorted(CLIP_ARRAYS)}")
    if len(splits) != len(clip_ids):
        raise StoreError(f"{path}: {len(splits)} splits for {len(clip_ids)} clips")
    fingerprint = {"attributes": attributes, "clip_ids": list(clip_ids), "arrays": list(arrays),
                   "frames": frames, "height": height, "width": width}
    store = ResumableStore(path, fingerprint)
    shapes = {name: CLIP_ARRAYS[name].trailing_shape(height, width, len(class_names)) for name in arrays}
    if not store.resumed:
        for name in arrays:
            _create_array(store.group, name, len(clip_ids), frames, shapes[name])
    todo = [i for i in range(len(clip_ids)) if i not in store.clips_done]
    for i in tqdm(todo, desc=f"clips -> {Path(path).name}", disable=not progress, unit="clip"):
        clip = render(i)
        for name in arrays:
            store.group[name][i] = _check_clip(name, clip[name], (frames, *shapes[name]), clip_ids[i])
        store.mark_done(i)
    return store.finish({
        **attributes,
        "class_names": list(class_names),
        "clip_ids": list(clip_ids),
        "split": list(splits),
        "num_clips": len(clip_ids),
        "num_frames": frames,
        "height": height,
        "width": width,
    })


class ClipStore:
    """Read access to a complete clip store; arrays come back as lazy Dask arrays."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.group = open_complete(self.path, what="clip store", rerun="dataset job")
        self._opened: dict[str, zarr.Array] = {}

    @cached_property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    @property
    def clip_ids(self) -> list[str]:
        return list(self.attrs["clip_ids"])

    @property
    def splits(self) -> np.ndarray:
        return np.asarray(self.attrs["split"])

    def clips_in(self, split: str) -> np.ndarray:
        """Indices of the clips of one split (``train``/``val``/``test``)."""
        return np.flatnonzero(self.splits == split)

    def __len__(self) -> int:
        return int(self.attrs["num_clips"])

    @cached_property
    def _array_names(self) -> frozenset[str]:
        return frozenset(self.group.array_keys())

    def has(self, name: str) -> bool:
        return name in self._array_names

    def require(self, names: Iterable[str], needed_by: str) -> None:
        """Fail with one message naming every array that ``needed_by`` needs and this store lacks."""
        missing = [n for n in names if not self.has(n)]
        if missing:
            raise StoreError(f"clip store {self.path} lacks array(s) {missing} needed by {needed_by}; "
                             f"it has {sorted(self._array_names)}")

    def zarr_array(self, name: str) -> zarr.Array:
        """The opened array, kept: a complete store never changes, and opening reads its metadata."""
        if name not in self._opened:
            self.require([name], needed_by=f"a read of {name!r}")
            self._opened[name] = self.group[name]
        return self._opened[name]

    def array(self, name: str) -> da.Array:
        """Lazy (clips, frames, ...) Dask array, chunked one frame per chunk like the store."""
        return da.from_zarr(self.zarr_array(name))

    def select(self, name: str, clips: Sequence[int], frames: Sequence[int] | None = None) -> np.ndarray:
        """(len(clips), len(frames), ...) of array ``name``, reading only the chunks of those frames."""
        return read_frames(self.zarr_array(name), clips, frames)


SPAN_READ_BYTES = 8_000_000  # read a row's frames as one contiguous span when it is at most this large


def read_frames(array: zarr.Array, rows: Sequence[int], frames: Sequence[int] | None = None) -> np.ndarray:
    """``array[rows][:, frames]`` of a (clips, frames, ...) array chunked one frame per chunk.

    Reads Zarr directly: a whole clip is one shard read. Selected frames are read as one contiguous span
    when the span is small (each Zarr call costs milliseconds, far more than decoding a small frame), else
    one chunk read per frame. Both Dask's per-chunk tasks (scheduler-bound on small chunks) and Zarr's
    orthogonal selection with integer lists (element-wise gathering) are several times slower here
    (bench/featurestore.py).
    """
    if frames is None:
        return np.stack([array[int(row)] for row in rows])
    frames = [int(f) for f in frames]
    low, high = min(frames), max(frames)
    frame_bytes = int(np.prod(array.shape[2:])) * array.dtype.itemsize
    if (high - low + 1) * frame_bytes <= SPAN_READ_BYTES:
        offsets = [f - low for f in frames]
        return np.stack([array[int(row), low:high + 1][offsets] for row in rows])
    return np.stack([np.stack([array[int(row), f] for f in frames]) for row in rows])


def open_clip_store(path: str | os.PathLike) -> ClipStore:
    """Open a complete clip store, or raise :class:`StoreError` saying what is wrong with it."""
    return ClipStore(path)
