"""Datasets of a config: which store each one reads or writes, its clips, arrays and (when known) clip
lengths, before any job runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clipstore import CLIP_ARRAYS, ClipStore, StoreError, open_clip_store
from clipstore.ingest import StoreOptions
from clipstore.kinds import SYNTHETIC_OPTIONS, check_keys, open_reader, reader_arrays, store_options
from workflow.planning.config import DATA, PlanError


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    kind: str  # clipstore.kinds.KINDS: "clipstore" is used in place, every other kind is written by the dataset rule
    store: str
    num_clips: int
    arrays: tuple[str, ...]
    entry: Mapping[str, Any]  # the config entry (the dataset job's parameters)
    lengths: Mapping[str, int] | None = None  # clip id -> frames, when known before the dataset job runs
    ground_truth_frames: tuple[int, ...] | None = None  # when ground truth is kept at some frames only

    @property
    def num_frames(self) -> int | None:
        """The longest clip's frames, when known."""
        return max(self.lengths.values(), default=0) if self.lengths else None


def plan_dataset(name: str, entry: Mapping[str, Any], seed: int) -> DatasetPlan:
    check_keys(name, entry)
    kind = entry["kind"]
    if kind == "synthetic":
        from clipstore.synthetic import SyntheticSpec, clip_ids  # validates sizes with messages naming the field

        arguments = {key: entry[key] for key in SYNTHETIC_OPTIONS if key in entry}
        spec = SyntheticSpec(**{**arguments, "seed": entry.get("seed", seed)})
        options = store_options(entry)
        frames = options.length(spec.frames)
        truth = options.ground_truth_frames(frames)
        return DatasetPlan(name, kind, DATA.format(dataset=name), spec.clips, reader_arrays(kind),
                           {**entry, "seed": spec.seed}, dict.fromkeys(clip_ids(spec), frames),
                           None if truth is None else tuple(truth))
    root = Path(entry["root"])
    if not root.exists():
        raise PlanError(f"dataset {name!r}: root {str(root)!r} does not exist")
    if kind == "clipstore":
        return _existing_store(name, kind, str(root), entry)
    try:
        options = store_options(entry)
        reader = open_reader(entry)
        clips = len(reader.entries())
    except StoreError as err:
        raise PlanError(f"dataset {name!r}: {err}") from None
    path = DATA.format(dataset=name)
    written = _written_store(path, reader.options(), options)
    if written is not None:  # an earlier run's store with these settings: its clip lengths are known
        return _store_plan(name, kind, written, entry)
    truth = options.ground_truth_frames(options.context_frames)
    return DatasetPlan(name, kind, path, clips, reader_arrays(kind), dict(entry),
                       ground_truth_frames=None if truth is None else tuple(truth))


def _written_store(path: str, reader_options: dict[str, Any], options: StoreOptions) -> ClipStore | None:
    """The complete store an earlier dataset job wrote with these settings, if any."""
    try:
        store = open_clip_store(path)
    except StoreError:
        return None
    same = (store.attrs.get("reader_options") == reader_options
            and store.attrs.get("store_options") == asdict(options))
    return store if same else None


def _existing_store(name: str, kind: str, path: str, entry: Mapping[str, Any]) -> DatasetPlan:
    try:
        store = open_clip_store(path)
    except StoreError as err:
        raise PlanError(f"dataset {name!r}: {err}") from None
    return _store_plan(name, kind, store, entry)


def _store_plan(name: str, kind: str, store: ClipStore, entry: Mapping[str, Any]) -> DatasetPlan:
    """A dataset whose clip store exists: its arrays, clip lengths and ground-truth frames are known."""
    truth = store.attrs.get("ground_truth_frames")
    arrays = tuple(a for a in sorted(store.group.array_keys()) if a in CLIP_ARRAYS)
    lengths = dict(zip(store.clip_ids, (int(n) for n in store.frame_counts), strict=True))
    return DatasetPlan(name, kind, str(store.path), len(store), arrays, dict(entry),
                       {c: n for c, n in lengths.items() if n > 0}, None if truth is None else tuple(truth))


