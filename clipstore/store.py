"""The canonical clip store ``results/data/{dataset}.zarr`` (layout in docs/stores.md).

N clips of up to T frames of H x W pixels (each clip's length in ``frame_count``), one Zarr shard per clip
and one chunk per frame, so a probe reads just the views it samples. Ground truth may be kept at some
frames only (an array's ``frame_map``); reads go through that map. Datasets without some ground truth
simply lack that array; asking for it gives a :class:`StoreError` naming the store and the array.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from tqdm.auto import tqdm

from clipstore.errors import BadClip, StoreError
from clipstore.resumable import ResumableStore, open_complete
from clipstore.verify import WRITE_EVERY_CHUNK, check_array, shard_written


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


FRAME_COUNT = "frame_count"  # (N,) int32: frames of each clip; 0 marks a skipped clip
REQUIRED_ATTRIBUTES = ("class_names", "clip_ids", "split", "num_clips", "num_frames", "height", "width")
ON_BAD_CLIP = ("error", "skip")


def is_ground_truth(name: str) -> bool:
    """Every array but ``frames`` is ground truth (and may be kept at some frames only)."""
    return name != "frames"


def _create_array(group: zarr.Group, name: str, clips: int, rows: int, trailing: tuple[int, ...],
                  frame_map: Sequence[int] | None) -> None:
    spec = CLIP_ARRAYS[name]
    group.create_array(
        name,
        shape=(clips, rows, *trailing),
        dtype=spec.dtype,
        chunks=(1, 1, *trailing),
        shards=(1, rows, *trailing),
        fill_value=spec.fill_value,
        dimension_names=("clip", "frame", *spec.trailing_dims),
        attributes={} if frame_map is None else {"frame_map": [int(f) for f in frame_map]},
        config=WRITE_EVERY_CHUNK,
        overwrite=True,
    )


def _padded(name: str, value: np.ndarray, rows: int, trailing: tuple[int, ...], expected_rows: int,
             clip: str) -> np.ndarray:
    """``value`` checked against the layout, cast, and padded with the fill value to ``rows`` rows."""
    spec = CLIP_ARRAYS[name]
    value = np.asarray(value)
    if value.shape != (expected_rows, *trailing):
        raise BadClip(f"clip {clip!r}: array {name!r} has shape {value.shape}, expected "
                      f"{(expected_rows, *trailing)}")
    if value.dtype.kind != np.dtype(spec.dtype).kind and not (value.dtype.kind in "ui" and spec.dtype[0] in "ui"):
        raise BadClip(f"clip {clip!r}: array {name!r} has dtype {value.dtype}, expected {spec.dtype}")
    if expected_rows == rows:  # a full-length clip: no padded copy
        return value.astype(spec.dtype, copy=False)
    out = np.full((rows, *trailing), spec.fill_value, dtype=spec.dtype)
    out[:expected_rows] = value
    return out


@dataclass(frozen=True)
class ClipLayout:
    """What one clip store holds: N clips of up to ``frames`` frames of ``height`` x ``width`` pixels.

    ``ground_truth_frames`` keeps the ground-truth arrays at those clip frames only (their frame map);
    None keeps them at every frame. RGB is always complete.
    """

    clip_ids: tuple[str, ...]
    splits: tuple[str, ...]
    class_names: tuple[str, ...]
    frames: int
    height: int
    width: int
    arrays: tuple[str, ...] = tuple(CLIP_ARRAYS)
    ground_truth_frames: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.arrays) - set(CLIP_ARRAYS))
        if unknown:
            raise StoreError(f"unknown clip-store arrays {unknown}; known: {sorted(CLIP_ARRAYS)}")
        if "frames" not in self.arrays:
            raise StoreError("a clip store always holds 'frames'")
        if len(self.splits) != len(self.clip_ids):
            raise StoreError(f"{len(self.splits)} splits for {len(self.clip_ids)} clips")
        if len(set(self.clip_ids)) != len(self.clip_ids):
            twice = sorted({c for c in self.clip_ids if self.clip_ids.count(c) > 1})
            raise StoreError(f"clip ids {twice[:5]} occur more than once")

    def rows(self, name: str) -> int:
        """Length of the frame axis of array ``name``."""
        if self.ground_truth_frames is None or not is_ground_truth(name):
            return self.frames
        return len(self.ground_truth_frames)

    def frame_map(self, name: str) -> tuple[int, ...] | None:
        return self.ground_truth_frames if is_ground_truth(name) else None

    def rows_within(self, name: str, length: int) -> int:
        """Rows of array ``name`` that a clip of ``length`` frames fills (the rest hold the fill value)."""
        frame_map = self.frame_map(name)
        return length if frame_map is None else sum(1 for f in frame_map if f < length)

    def trailing(self, name: str) -> tuple[int, ...]:
        return CLIP_ARRAYS[name].trailing_shape(self.height, self.width, len(self.class_names))

    def attributes(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "clip_ids": list(self.clip_ids),
            "split": list(self.splits),
            "num_clips": len(self.clip_ids),
            "num_frames": self.frames,
            "height": self.height,
            "width": self.width,
            "ground_truth_frames": None if self.ground_truth_frames is None else list(self.ground_truth_frames),
        }


Render = Callable[[int], dict[str, np.ndarray]]


class _ClipWriter:
    """Writes clips into a :class:`ResumableStore`: data from worker threads (whole shards, one per clip
    and array, so writers never share a shard), bookkeeping (frame counts, done list, skips) from the
    caller's thread only."""

    def __init__(self, store: ResumableStore, layout: ClipLayout, render: Render) -> None:
        self.store, self.layout, self.render = store, layout, render

    def create(self) -> None:
        layout = self.layout
        for name in layout.arrays:
            _create_array(self.store.group, name, len(layout.clip_ids), layout.rows(name), layout.trailing(name),
                          layout.frame_map(name))
        self.store.group.create_array(FRAME_COUNT, shape=(len(layout.clip_ids),), dtype="int32",
                                      chunks=(len(layout.clip_ids),), fill_value=0, dimension_names=("clip",),
                                      overwrite=True)
        self.store.group.attrs["skipped"] = {}

    def write(self, i: int) -> int:
        """Render and write clip ``i``; its frame count. Raises :class:`BadClip` for a bad clip."""
        clip, layout = self.layout.clip_ids[i], self.layout
        arrays = self.render(i)
        missing = [name for name in layout.arrays if name not in arrays]
        if missing:
            raise BadClip(f"clip {clip!r}: no array(s) {missing}")
        length = int(np.shape(arrays["frames"])[0])
        if not 1 <= length <= layout.frames:
            raise BadClip(f"clip {clip!r}: {length} frames; the store holds 1 to {layout.frames}")
        padded = {name: _padded(name, arrays[name], layout.rows(name), layout.trailing(name),
                                layout.rows_within(name, length), clip) for name in layout.arrays}
        for name, value in padded.items():
            self.store.array(name)[i] = value
        return length

    def done(self, i: int, length: int, skip_reason: str | None = None) -> None:
        self.store.group[FRAME_COUNT][i] = length
        if skip_reason is not None:
            skipped = dict(self.store.group.attrs["skipped"])
            skipped[self.layout.clip_ids[i]] = skip_reason
            self.store.group.attrs["skipped"] = skipped
        self.store.mark_done(i)


def write_clip_store(
    path: str | os.PathLike,
    render: Render,
    *,
    clip_ids: Sequence[str],
    splits: Sequence[str],
    class_names: Sequence[str],
    frames: int,
    height: int,
    width: int,
    attributes: dict[str, Any],
    arrays: Iterable[str] = tuple(CLIP_ARRAYS),
    ground_truth_frames: Sequence[int] | None = None,
    threads: int = 1,
    on_bad_clip: str = "error",
    log: logging.Logger | None = None,
    progress: bool = True,
) -> Path:
    """Write a complete clip store; ``render(i)`` returns the arrays of clip ``i`` (without the clip axis).

    ``frames`` is the longest clip: a clip of ``L <= frames`` frames returns L rows of ``frames`` and the
    ground-truth rows at its own frames of ``ground_truth_frames`` (every frame when None); its length is
    recorded in ``frame_count`` and nothing past it holds data. ``render`` raises :class:`BadClip` for a bad
    clip: ``on_bad_clip="error"`` stops with that line, ``"skip"`` records the clip as skipped (frame count
    0, reason in the ``skipped`` attribute) and goes on. ``threads`` clips are read and written at once.
    Crash-safe and resumable (see :mod:`clipstore.resumable`): clips finished by a killed run are kept.
    """
    if on_bad_clip not in ON_BAD_CLIP:
        raise StoreError(f"on_bad_clip={on_bad_clip!r}; use one of {list(ON_BAD_CLIP)}")
    try:
        layout = ClipLayout(tuple(clip_ids), tuple(splits), tuple(class_names), int(frames), int(height),
                            int(width), tuple(arrays),
                            None if ground_truth_frames is None else tuple(int(f) for f in ground_truth_frames))
    except StoreError as err:
        raise StoreError(f"{path}: {err}") from None
    fingerprint = {"attributes": attributes, "clip_ids": list(layout.clip_ids), "arrays": list(layout.arrays),
                   "frames": layout.frames, "height": layout.height, "width": layout.width,
                   "ground_truth_frames": layout.attributes()["ground_truth_frames"]}
    store = ResumableStore(path, fingerprint)
    writer = _ClipWriter(store, layout, render)
    if not store.resumed:
        writer.create()
    todo = [i for i in range(len(layout.clip_ids)) if i not in store.clips_done]
    bar = tqdm(total=len(todo), desc=f"clips -> {Path(path).name}", disable=not progress, unit="clip")
    for i, outcome in _run_in_threads(writer.write, todo, threads):
        if isinstance(outcome, BadClip):
            if on_bad_clip == "error":
                raise outcome
            if log is not None:
                log.warning("skipped %s", outcome)
            writer.done(i, 0, skip_reason=str(outcome))
        else:
            writer.done(i, outcome)
        bar.update()
    bar.close()
    return store.finish({**attributes, **layout.attributes(), "skipped": dict(store.group.attrs["skipped"])})


def _run_in_threads(work: Callable[[int], int], items: Sequence[int],
                    threads: int) -> Iterator[tuple[int, int | BadClip]]:
    """``(item, work(item) or the BadClip it raised)`` as they finish, at most ``2 * threads`` in flight
    (bounded memory); any other exception propagates. One thread runs everything in order."""
    if threads <= 1:
        for item in items:
            yield item, _outcome(work, item)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending = iter(items)
        running = {pool.submit(_outcome, work, item): item for item in islice(pending, 2 * threads)}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                item = running.pop(future)
                yield item, future.result()
                following = next(pending, None)
                if following is not None:
                    running[pool.submit(_outcome, work, following)] = following


def _outcome(work: Callable[[int], int], item: int) -> int | BadClip:
    try:
        return work(item)
    except BadClip as bad:
        return bad


class ClipStore:
    """Read access to a complete clip store; arrays come back as lazy Dask arrays."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.group = open_complete(self.path, what="clip store", rerun="dataset job")
        self._opened: dict[str, zarr.Array] = {}
        self._frame_maps: dict[str, tuple[np.ndarray, dict[int, int]]] = {}
        self._written: set[tuple[str, int]] = set()
        self._check_layout()

    def _check_layout(self) -> None:
        """Attributes and every array against the documented layout (docs/stores.md), at open: a group
        that is not a clip store, or an array of another dtype or shape, fails here with one line."""
        missing = [key for key in REQUIRED_ATTRIBUTES if key not in self.group.attrs]
        if missing:
            raise StoreError(f"{self.path} is not a clip store: it lacks attribute(s) {missing} (docs/stores.md)")
        clips, frames = len(self), int(self.attrs["num_frames"])
        for key in ("clip_ids", "split"):
            if len(self.attrs[key]) != clips:
                raise StoreError(f"{self.path}: attribute {key!r} lists {len(self.attrs[key])} entries for "
                                 f"num_clips={clips}")
        sizes = (int(self.attrs["height"]), int(self.attrs["width"]), len(self.class_names))
        for name in self._array_names & set(CLIP_ARRAYS):
            array, spec = self.group[name], CLIP_ARRAYS[name]
            stored = array.attrs.get("frame_map")
            rows = frames if stored is None else len(stored)
            check_array(self.path, name, array, spec.dtype, (clips, rows, *spec.trailing_shape(*sizes)))
        if FRAME_COUNT in self._array_names:
            check_array(self.path, FRAME_COUNT, self.group[FRAME_COUNT], "int32", (clips,))

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
        """Indices of the clips of one split (``train``/``val``/``test``), skipped clips left out."""
        return np.flatnonzero((self.splits == split) & (self.frame_counts > 0))

    @cached_property
    def frame_counts(self) -> np.ndarray:
        """(N,) frames of each clip (0 for a skipped clip); every clip is full length in a store without
        the ``frame_count`` array."""
        if FRAME_COUNT in self._array_names:
            return self.group[FRAME_COUNT][:].astype(np.int64)
        return np.full(len(self), int(self.attrs["num_frames"]), dtype=np.int64)

    @property
    def skipped(self) -> dict[str, str]:
        """Clip id -> why it was skipped when the store was written."""
        return dict(self.attrs.get("skipped") or {})

    def frame_map(self, name: str) -> np.ndarray:
        """The clip frame of each row of array ``name`` (every frame unless ground truth was subsampled)."""
        return self._frame_map(name)[0]

    def _frame_map(self, name: str) -> tuple[np.ndarray, dict[int, int]]:
        """(frame map, clip frame -> row) of array ``name``, built once per array."""
        if name not in self._frame_maps:
            array = self.zarr_array(name)
            stored = array.attrs.get("frame_map")
            frames = np.arange(array.shape[1]) if stored is None else np.asarray(stored, dtype=np.int64)
            self._frame_maps[name] = frames, {int(f): row for row, f in enumerate(frames)}
        return self._frame_maps[name]

    def rows(self, name: str, clip: int, frames: Sequence[int]) -> list[int]:
        """Rows of array ``name`` holding clip frames ``frames`` of clip ``clip``; a frame past the clip's
        length, or one whose ground truth was not kept, is an error naming the store, clip and array."""
        count = int(self.frame_counts[clip])
        beyond = [int(f) for f in frames if not 0 <= int(f) < count]
        if beyond:
            raise StoreError(f"clip store {self.path}: clip {self.clip_ids[clip]!r} has {count} frames; "
                             f"frame(s) {beyond} of array {name!r} were asked")
        frame_map, row_of = self._frame_map(name)
        absent = [int(f) for f in frames if int(f) not in row_of]
        if absent:
            raise StoreError(f"clip store {self.path}: array {name!r} keeps ground truth at frames "
                             f"{frame_map.tolist()} only (ground_truth: query); frame(s) {absent} of clip "
                             f"{self.clip_ids[clip]!r} were asked")
        return [row_of[int(f)] for f in frames]

    def clip_arrays(self, clip: int, names: Iterable[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Arrays ``names`` of one clip cut to its own frames, and each one's frame map: what an extractor
        reads. Nothing past the clip's length is returned."""
        count = int(self.frame_counts[clip])
        arrays, maps = {}, {}
        for name in names:
            self.require_written(name, clip)
            frame_map = self.frame_map(name)
            rows = int(np.sum(frame_map < count))
            arrays[name] = self.zarr_array(name)[clip, :rows]
            maps[name] = frame_map[:rows]
        return arrays, maps

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

    def require_written(self, name: str, clip: int) -> None:
        """Refuse a clip whose shard of array ``name`` is missing (it would read as the fill value)."""
        if (name, int(clip)) in self._written or self.frame_counts[clip] == 0:
            return
        if not shard_written(self.path, self.zarr_array(name), clip):
            raise StoreError(f"clip store {self.path}: array {name!r} of clip {self.clip_ids[clip]!r} is missing "
                             "on disk (a damaged store: remove it and rerun its dataset job)")
        self._written.add((name, int(clip)))

    def select(self, name: str, clips: Sequence[int], frames: Sequence[int] | None = None) -> np.ndarray:
        """(len(clips), len(frames), ...) of array ``name`` at clip frames ``frames`` (through its frame map),
        reading only the chunks of those frames; ``frames=None`` reads the stored rows whole."""
        for clip in clips:
            self.require_written(name, int(clip))
        if frames is None:
            return read_frames(self.zarr_array(name), clips)
        rows = [self.rows(name, int(clip), frames) for clip in clips]
        if all(r == rows[0] for r in rows):
            return read_frames(self.zarr_array(name), clips, rows[0])
        return np.concatenate([read_frames(self.zarr_array(name), [clip], r) for clip, r in zip(clips, rows)])


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
