"""What a clip store or a feature store holds, in a few readable lines (``python -m clipstore inspect PATH``).

Reads only metadata and the small index arrays; works on unfinished (``.partial``) stores too, saying how
far they got. Feature stores are read with Zarr directly, so this needs neither torch nor the extractors.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from clipstore.errors import StoreError
from clipstore.resumable import PARTIAL_SUFFIX


def describe(path: str | os.PathLike) -> str:
    """The report for ``path``: a clip store, one feature-store shard, or a folder of shards."""
    path = Path(path)
    shards = _shards(path) if path.is_dir() and not _is_zarr(path) else []
    if shards:
        return "\n".join(_feature_store(path, shards))
    group, state = _open(path)
    if "clip_ids" in group.attrs or "frames" in group.array_keys():
        return "\n".join(_clip_store(path, group, state))
    if "frame_index" in group.array_keys() or "layers" in group.attrs:
        return "\n".join(_feature_store(path.parent, [path]))
    raise StoreError(f"{path} is a Zarr group but neither a clip store nor a feature store")


def _shards(folder: Path) -> list[Path]:
    """The shards of a feature-store folder, finished or not (``shard-K.zarr`` or ``shard-K.zarr.partial``)."""
    found = (re.fullmatch(rf"shard-(\d+)\.zarr(?:{re.escape(PARTIAL_SUFFIX)})?", p.name) for p in folder.iterdir())
    shards = {int(match.group(1)) for match in found if match}
    return [folder / f"shard-{k}.zarr" for k in sorted(shards)]


def _is_zarr(path: Path) -> bool:
    return (path / "zarr.json").exists()


def _open(path: Path) -> tuple[zarr.Group, str]:
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    where = path if path.exists() else partial if partial.exists() else None
    if where is None:
        raise StoreError(f"{path} does not exist")
    try:
        group = zarr.open_group(where, mode="r")
    except (FileNotFoundError, ValueError) as err:
        raise StoreError(f"{where} is not a Zarr v3 store: {err}") from None
    if group.attrs.get("complete") is True:
        return group, "complete"
    done = len(group.attrs.get("clips_done", []))
    return group, f"UNFINISHED ({where.name}: {done} clips written; rerun its job to resume)"


def _arrays(group: zarr.Group, skip: tuple[str, ...] = ()) -> Iterator[str]:
    names = [n for n in sorted(group.array_keys()) if n not in skip]
    width = max((len(n) for n in names), default=0)
    for name in names:
        array = group[name]
        frame_map = array.attrs.get("frame_map")
        note = f"  ground truth at frames {_frames(frame_map)}" if frame_map is not None else ""
        yield f"    {name:<{width}}  {str(array.shape):<28} {array.dtype}{note}"


def _frames(frames: Any) -> str:
    frames = [int(f) for f in frames]
    if len(frames) <= 12:
        return str(frames)
    return f"[{', '.join(map(str, frames[:10]))}, ... {frames[-1]}] ({len(frames)})"


def _clip_store(path: Path, group: zarr.Group, state: str) -> Iterator[str]:
    attrs = dict(group.attrs)
    yield f"clip store {path} ({state})"
    root = f" at {attrs['source_root']}" if attrs.get("source_root") else ""
    yield f"  source: {attrs.get('source_kind', '?')}{root}"
    splits = Counter(attrs.get("split", []))
    counts = group["frame_count"][:] if "frame_count" in group.array_keys() else None
    skipped = attrs.get("skipped") or {}
    yield (f"  clips: {attrs.get('num_clips', '?')} ({', '.join(f'{s} {n}' for s, n in sorted(splits.items()))})"
           f", skipped {len(skipped)}")
    if counts is not None and state == "complete":
        kept = counts[counts > 0]
        lengths = f"{int(kept.min())} to {int(kept.max())}, mean {kept.mean():.1f}" if len(kept) else "none"
        yield f"  frames per clip: {lengths} (store holds up to {attrs.get('num_frames')})"
    else:
        yield f"  frames per clip: up to {attrs.get('num_frames', '?')}"
    yield f"  frame size: {attrs.get('height', '?')} x {attrs.get('width', '?')} pixels"
    truth = attrs.get("ground_truth_frames")
    yield "  ground truth: " + ("at every frame" if truth is None else f"at frames {_frames(truth)} only")
    names = attrs.get("class_names") or []
    yield f"  classes ({len(names)}): {', '.join(names) if names else 'none'}"
    yield "  arrays:"
    yield from _arrays(group)
    for key in ("reader_options", "store_options", "generator"):
        if attrs.get(key):
            yield f"  {key.replace('_', ' ')}: {attrs[key]}"
    for clip, reason in list(skipped.items())[:20]:
        yield f"  skipped {clip}: {reason}"
    if len(skipped) > 20:
        yield f"  ... and {len(skipped) - 20} more skipped clips"


def _feature_store(folder: Path, shards: list[Path]) -> Iterator[str]:
    opened = [_open(shard) for shard in shards]
    unfinished = [f"{shard.name}: {state}" for shard, (_, state) in zip(shards, opened) if state != "complete"]
    first = opened[0][0]
    attrs = dict(first.attrs)
    yield f"feature store {folder} ({len(shards)} shard(s), {'complete' if not unfinished else 'UNFINISHED'})"
    for line in unfinished:
        yield f"  {line}"
    random_init = " (RANDOM INIT)" if attrs.get("random_init") else ""
    yield (f"  model {attrs.get('model', '?')}{random_init}: family {attrs.get('family', '?')}, paradigm "
           f"{attrs.get('paradigm', '?')}, checkpoint {attrs.get('checkpoint')}")
    noise = {k: attrs[k] for k in ("sigma", "alpha_bar") if k in attrs}
    level = f" ({', '.join(f'{k} {v:.4g}' for k, v in noise.items())})" if noise else ""
    yield f"  timestep: {attrs.get('timestep')}{level}"
    yield f"  dataset: {attrs.get('dataset', '?')} ({attrs.get('clip_store', '?')})"
    groups = [g for g, _ in opened]
    clips = sum(int(g["clip_index"].shape[0]) for g in groups if "clip_index" in g.array_keys())
    index = max((g["frame_index"][:] for g in groups if "frame_index" in g.array_keys()), key=len, default=np.zeros(0))
    yield f"  clips: {clips}; feature frames per clip: {len(index)} at clip frames {_frames(index)}"
    counts = np.concatenate([g["frame_count"][:] for g in groups if "frame_count" in g.array_keys()] or [np.zeros(0)])
    if len(counts) and (counts < len(index)).any():
        shorter, skipped = int(((counts > 0) & (counts < len(index))).sum()), int((counts == 0).sum())
        yield f"  shorter clips: {shorter}, skipped clips: {skipped}"
    yield f"  layers: {attrs.get('layers')}; captures: {attrs.get('captures', ['output'])}; arrays of {shards[0].name}:"
    yield from _arrays(first, skip=("clip_index", "frame_index", "frame_count"))
    for key in ("options", "compute_dtype", "input_resolution", "input_frames", "fusion", "timestep_meaning",
                "model_timestep", "expert", "boundary_ratio", "shift_mu"):
        if attrs.get(key) is not None:
            yield f"  {key.replace('_', ' ')}: {attrs[key]}"
    yield f"  compression: {_compression(attrs.get('compression'))}"


def _compression(recorded: dict | None) -> str:
    """How a feature store's values are stored: lossless, or the lossy codec and its error bound."""
    if not recorded or not recorded.get("lossy"):
        return "lossless"
    spec = ", ".join(f"{k} {v}" for k, v in recorded.items() if k not in ("lossy", "max_relative_error", "filters",
                                                                          "compressors"))
    return f"LOSSY ({spec}; relative error <= {recorded.get('max_relative_error')})"
