"""Bring a dataset in: one reader per on-disk layout, one driver that writes the canonical clip store.

A reader (:class:`DatasetReader`) knows one layout (``scannet``, ``dl3dv``, ``video``; docs/data.md): it
lists the clips with their splits, reads a clip's shape cheaply (file headers), and reads a clip's arrays at
given frames, raising :class:`~clipstore.errors.BadClip` with one line naming the file and what is wrong.
:func:`ingest` applies what every kind shares (``max_frames``, ``min_frames``, ``ground_truth: query``,
``on_bad_clip``) and writes through :func:`clipstore.store.write_clip_store`: crash-safe, resumable per
clip, ``threads`` clips at a time, with a progress bar and one log line per skipped clip.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from clipstore.errors import BadClip, StoreError
from clipstore.frames import CONTEXT_FRAMES, QUERY_STRIDE, query_frames
from clipstore.store import ON_BAD_CLIP, write_clip_store
from clipstore.verify import non_finite

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
GROUND_TRUTH = ("all", "query")


@dataclass(frozen=True)
class ClipEntry:
    """One clip of a dataset: its id in the store, its split, and where it lives."""

    id: str
    split: str
    path: Path


@dataclass(frozen=True)
class ClipShape:
    """What a clip's headers say: its frame count and frame size, and facts worth recording."""

    frames: int
    height: int
    width: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


class DatasetReader(ABC):
    """One on-disk layout. Subclasses set ``kind`` and ``arrays`` (the clip-store arrays they provide)."""

    kind: ClassVar[str]
    arrays: ClassVar[tuple[str, ...]]

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(f"{self.kind} dataset root {self.root} is not a directory")

    @abstractmethod
    def entries(self) -> list[ClipEntry]:
        """Every clip, in store order; a broken split file is a :class:`StoreError` naming it."""

    @abstractmethod
    def class_names(self) -> list[str]:
        """Names of the classes ``tag_counts`` counts (empty without classes)."""

    @abstractmethod
    def shape(self, entry: ClipEntry) -> ClipShape:
        """The clip's shape from headers only; :class:`BadClip` when files are missing or inconsistent."""

    @abstractmethod
    def read(self, entry: ClipEntry, frames: np.ndarray, ground_truth_frames: np.ndarray) -> dict[str, np.ndarray]:
        """RGB at clip frames ``frames`` and ground truth at ``ground_truth_frames``, in the clip-store
        layout (docs/stores.md); :class:`BadClip` for anything that differs from the layout."""

    def options(self) -> dict[str, Any]:
        """The reader's own settings, recorded in the store."""
        return {}


@dataclass(frozen=True)
class StoreOptions:
    """What every kind shares: how much of each clip to keep and what to do with a bad one."""

    max_frames: int | None = None  # keep the first N frames of each clip
    min_frames: int = 1  # a shorter clip is bad (skipped with on_bad_clip: skip)
    ground_truth: str = "all"  # all | query (ground truth only at the query frames inside context_frames)
    context_frames: int = CONTEXT_FRAMES
    on_bad_clip: str = "error"  # error | skip

    def __post_init__(self) -> None:
        if self.ground_truth not in GROUND_TRUTH:
            raise StoreError(f"ground_truth={self.ground_truth!r}; use one of {list(GROUND_TRUTH)}")
        if self.on_bad_clip not in ON_BAD_CLIP:
            raise StoreError(f"on_bad_clip={self.on_bad_clip!r}; use one of {list(ON_BAD_CLIP)}")
        for key in ("max_frames", "min_frames", "context_frames"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise StoreError(f"{key}={value!r} must be a positive integer")

    def length(self, available: int) -> int:
        return available if self.max_frames is None else min(available, self.max_frames)

    def ground_truth_frames(self, frames: int) -> list[int] | None:
        """The stored ground-truth frames of a store of ``frames`` frames (None: every frame)."""
        return None if self.ground_truth == "all" else query_frames(frames, self.context_frames, QUERY_STRIDE)


def ingest(path: str | os.PathLike, reader: DatasetReader, options: StoreOptions = StoreOptions(), *,
           threads: int = 1, progress: bool = True, log: logging.Logger = log) -> Path:
    """Write ``reader``'s dataset as the canonical clip store at ``path`` (see the module docstring)."""
    entries = reader.entries()
    if not entries:
        raise StoreError(f"{reader.kind} dataset {reader.root}: no clips listed")
    shapes = _shapes(reader, entries, options, threads)
    size = _common_size(shapes)
    frames = max(shape.frames for shape in shapes.values() if isinstance(shape, ClipShape))
    ground_truth_frames = options.ground_truth_frames(frames)

    def render(i: int) -> dict[str, np.ndarray]:
        shape = shapes[entries[i].id]
        if isinstance(shape, BadClip):
            raise shape
        if (shape.height, shape.width) != size:
            raise BadClip(f"clip {entries[i].id!r} ({entries[i].path}): frames of {shape.height}x{shape.width}, "
                          f"the dataset's are {size[0]}x{size[1]}")
        own = np.arange(shape.frames)
        truth = own if ground_truth_frames is None else np.asarray([f for f in ground_truth_frames if f < shape.frames])
        return reader.read(entries[i], own, truth)

    attributes = {
        "source_kind": reader.kind,
        "source_root": str(reader.root.resolve()),
        "reader_options": reader.options(),
        "store_options": asdict(options),
        "clip_sources": [os.path.relpath(e.path, reader.root) for e in entries],
        "clip_metadata": {i: dict(s.metadata) for i, s in shapes.items() if isinstance(s, ClipShape) and s.metadata},
    }
    return write_clip_store(path, render, clip_ids=[e.id for e in entries], splits=[e.split for e in entries],
                            class_names=reader.class_names(), frames=frames, height=size[0], width=size[1],
                            attributes=attributes, arrays=reader.arrays, ground_truth_frames=ground_truth_frames,
                            threads=threads, on_bad_clip=options.on_bad_clip, log=log, progress=progress)


def _shapes(reader: DatasetReader, entries: Sequence[ClipEntry], options: StoreOptions,
            threads: int) -> dict[str, ClipShape | BadClip]:
    """Every clip's kept shape (``max_frames`` applied) or why it is bad; with ``on_bad_clip: error`` the
    first bad clip stops here, before anything is written."""
    def one(entry: ClipEntry) -> ClipShape | BadClip:
        try:
            shape = reader.shape(entry)
        except BadClip as bad:
            return bad
        kept = options.length(shape.frames)
        if kept < options.min_frames:
            return BadClip(f"clip {entry.id!r} ({entry.path}): {shape.frames} frames, fewer than "
                           f"min_frames={options.min_frames}")
        return ClipShape(kept, shape.height, shape.width, shape.metadata)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        shapes = dict(zip((e.id for e in entries), pool.map(one, entries)))
    bad = [s for s in shapes.values() if isinstance(s, BadClip)]
    if bad and options.on_bad_clip == "error":
        raise bad[0]
    if len(bad) == len(shapes):
        raise StoreError(f"{reader.kind} dataset {reader.root}: every clip is bad; the first: {bad[0]}")
    return shapes


def _common_size(shapes: Mapping[str, ClipShape | BadClip]) -> tuple[int, int]:
    """The frame size of the first good clip; clips of another size are bad (checked when rendered)."""
    first = next(s for s in shapes.values() if isinstance(s, ClipShape))
    return first.height, first.width


def read_split_lists(root: Path, kind: str) -> list[tuple[str, list[Any]]]:
    """``(split, entries)`` of ``root/{train,val,test}.json`` (train and val required): the reference
    layout's split files, each a JSON list of ``[folder, name]`` pairs."""
    import json

    lists = []
    for split in SPLITS:
        path = root / f"{split}.json"
        if not path.exists():
            if split == "test":
                continue
            raise StoreError(f"{kind} dataset {root}: split file {path.name} is missing")
        try:
            listed = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(listed, list):
            raise StoreError(f"{path}: expected a JSON list of [folder, name] pairs, got {type(listed).__name__}")
        for index, item in enumerate(listed):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) and x for x in item)):
                raise StoreError(f"{path}: entry {index} is {item!r}, expected a [folder, name] pair of strings")
        lists.append((split, listed))
    return lists


def require_finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values``, or :class:`BadClip` naming ``what`` when any is NaN or infinite."""
    bad = non_finite(values)
    if bad:
        raise BadClip(f"{what}: {bad} non-finite value(s)")
    return values
