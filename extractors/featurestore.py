"""The feature store ``results/features/{dataset}/{model}/{timestep}/shard-{k}.zarr`` (docs/stores.md).

One store holds the clips of one extraction job: ``layer_{L}`` arrays of shape (clips, T', h, w, C) in
float16 (and ``layer_{L}.{capture}`` for attention captures, :mod:`extractors.captures`), one chunk per
feature frame and one Zarr shard per clip (one writer per shard), plus ``clip_index`` (into the clip store),
``frame_index`` (the clip frame each feature frame stands for) and ``frame_count`` (the feature frames each
clip has: a shorter clip has a prefix of ``frame_index``, a skipped clip none; rows past a clip's count are
never read).
Writing goes through :class:`~clipstore.resumable.ResumableStore`: crash-safe, resumable per clip, with the
completion marker written last; readers refuse stores without it. The layer arrays are lossless (zstd) unless
the writer is given a lossy ``compression`` spec (:mod:`extractors.codecs`); the root attribute
``compression`` records which, and zarr decodes either on read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from clipstore.errors import StoreError
from clipstore.resumable import ResumableStore, open_complete
from clipstore.store import read_frames
from clipstore.verify import WRITE_EVERY_CHUNK, check_array, require_finite, shard_written
from extractors import codecs
from extractors.base import ClipFeatures
from extractors.captures import OUTPUT, FeatureKey, array_name, feature_keys

FLOAT16_MAX = float(np.finfo(np.float16).max)
FEATURE_DIMS = ("clip", "frame", "y", "x", "channel")
FRAME_COUNT = "frame_count"


def layer_key(layer: int, capture: str = OUTPUT) -> str:
    return array_name(layer, capture)


def to_float16(values: np.ndarray, *, what: str, compression: Mapping[str, Any] | None = None) -> np.ndarray:
    """Cast to float16, refusing values that would become inf (in the cast, or in the mantissa rounding of a
    lossy ``compression``) or that already are not finite."""
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise StoreError(f"{what}: features contain NaN or inf; refusing to store them")
    peak = float(np.abs(values).max(initial=0.0))
    if peak > FLOAT16_MAX:
        raise StoreError(f"{what}: feature magnitude {peak:.4g} exceeds the float16 range ({FLOAT16_MAX}); "
                         f"it would be stored as inf")
    if compression is not None and not codecs.rounds_to_finite(compression, peak):
        raise StoreError(f"{what}: feature magnitude {peak:.4g} would be stored as inf: compression "
                         f"{compression} rounds it past the float16 range ({FLOAT16_MAX})")
    return values.astype(np.float16)


class FeatureStoreWriter:
    """Writes the clips of one job, then :meth:`finish` publishes the complete store."""

    def __init__(self, path: str | os.PathLike, *, clip_index: Sequence[int], layers: Sequence[int],
                 fingerprint: dict[str, Any], compression_level: int = 1,
                 compression: Mapping[str, Any] | None = None, captures: Sequence[str] = (OUTPUT,)) -> None:
        """``compression``: a spec of :mod:`extractors.codecs` (None: lossless); ``compression_level`` is its
        zstd level. ``captures``: what is stored per layer (block outputs unless attention is asked for)."""
        self.clip_index = [int(c) for c in clip_index]
        self.layers = tuple(layers)
        self.captures = tuple(captures)
        self.keys = feature_keys(self.layers, self.captures)
        self.compression = codecs.normalise_compression(compression, owner=f"feature store {path}")
        self.compression_level = compression_level
        # A lossy store is another store: a partial or finished one written with other settings is discarded,
        # never resumed. Lossless adds nothing, so stores written before compression existed stay valid.
        lossy = {"compression": self.compression} if self.compression else {}
        attention = {"captures": list(self.captures)} if self.captures != (OUTPUT,) else {}
        self.store = ResumableStore(path, {**fingerprint, "clip_index": self.clip_index,
                                           "layers": list(self.layers), **lossy, **attention})
        if not self.store.resumed:
            self.store.group.create_array(FRAME_COUNT, shape=(len(self.clip_index),), dtype="int64",
                                          chunks=(len(self.clip_index),), fill_value=0, dimension_names=("clip",))

    @property
    def pending(self) -> list[int]:
        """Positions (into ``clip_index``) of the clips still to write; a resumed job skips the rest."""
        done = self.store.clips_done
        return [i for i in range(len(self.clip_index)) if i not in done]

    def _ensure_arrays(self, features: ClipFeatures) -> None:
        group = self.store.group
        if "frame_index" in group.array_keys():
            return
        arrays = features.arrays()
        for layer, capture in self.keys:
            frame_shape = arrays[layer, capture].shape[1:]
            frames = len(features.frame_index)
            group.create_array(
                layer_key(layer, capture), shape=(len(self.clip_index), frames, *frame_shape), dtype="float16",
                chunks=(1, 1, *frame_shape), shards=(1, frames, *frame_shape),
                **codecs.array_codecs(self.compression, level=self.compression_level), fill_value=0.0,
                dimension_names=FEATURE_DIMS, attributes={"layer": layer, "capture": capture},
                config=WRITE_EVERY_CHUNK,
            )
        group.create_array("clip_index", data=np.asarray(self.clip_index, dtype=np.int64),
                           dimension_names=("clip",))
        group.create_array("frame_index", data=np.asarray(features.frame_index, dtype=np.int64),
                           dimension_names=("frame",))

    def write_clip(self, position: int, features: ClipFeatures | None) -> None:
        """Write every layer of the clip at ``position`` (None: a skipped clip, no frames), then mark it done.

        The first clip written sizes the arrays, so a job writes its longest clip first; a shorter clip's
        ``frame_index`` must be a prefix of it, and its rows past its own frames keep the fill value."""
        if features is not None:
            self._write_layers(position, features)
        count = 0 if features is None else len(features.frame_index)
        self.store.group[FRAME_COUNT][position] = count
        self.store.mark_done(position)

    def _write_layers(self, position: int, features: ClipFeatures) -> None:
        clip = self.clip_index[position]
        arrays = features.arrays()
        missing = [layer if capture == OUTPUT else f"{layer}.{capture}" for layer, capture in self.keys
                   if (layer, capture) not in arrays]
        if missing:
            raise StoreError(f"clip {clip}: extractor returned no features for layer(s) {missing}")
        self._ensure_arrays(features)
        group = self.store.group
        expected_frames = group["frame_index"][:]
        count = len(features.frame_index)
        if not np.array_equal(expected_frames[:count], features.frame_index):
            given = np.asarray(features.frame_index).tolist()
            raise StoreError(f"clip {clip}: frame_index {given} is not a prefix of the first clip's "
                             f"{expected_frames.tolist()}")
        for layer, capture in self.keys:
            target = self.store.array(layer_key(layer, capture))
            values = arrays[layer, capture]
            what = f"clip {clip}, layer {layer}" + ("" if capture == OUTPUT else f" {capture}")
            if values.shape != (count, *target.shape[2:]):
                raise StoreError(f"{what}: features of shape {values.shape}, expected {(count, *target.shape[2:])}")
            padded = np.zeros(target.shape[1:], dtype=np.float16)
            padded[:count] = to_float16(values, what=what, compression=self.compression)
            target[position] = padded

    def drop_snapshot(self) -> None:
        self.store.drop_snapshot()

    def finish(self, attributes: dict[str, Any], *, keep_snapshot: bool = False) -> Path:
        """Publish the store (see :meth:`clipstore.resumable.ResumableStore.finish`)."""
        if self.pending:
            raise StoreError(f"{self.store.path}: clips at positions {self.pending} were never written")
        if self.store.published:
            return self.store.finish(attributes, keep_snapshot=keep_snapshot)
        if "frame_index" not in self.store.group.array_keys():  # every clip of the shard was skipped
            self.store.group.create_array("clip_index", data=np.asarray(self.clip_index, dtype=np.int64),
                                          dimension_names=("clip",))
            self.store.group.create_array("frame_index", data=np.zeros(0, dtype=np.int64),
                                          dimension_names=("frame",))
        compression = codecs.describe(self.compression, level=self.compression_level)
        return self.store.finish({**attributes, "layers": list(self.layers), "captures": list(self.captures),
                                  "compression": compression}, keep_snapshot=keep_snapshot)


@dataclass(frozen=True)
class _Shard:
    """One shard's index arrays and opened layer arrays, read once when the store is opened."""

    clip_index: np.ndarray
    frame_index: np.ndarray
    frame_count: np.ndarray | None  # None in a store written before frame counts: every clip full length
    layers: dict[FeatureKey, zarr.Array]  # by (layer, capture); absent when every clip of the shard was skipped


def _read_shard(path: Path, shard: zarr.Group) -> _Shard:
    """One shard checked against the documented layout (docs/stores.md), one line naming the array, and
    its index arrays read."""
    present = set(shard.array_keys())
    for name in ("clip_index", "frame_index"):
        if name not in present:
            raise StoreError(f"{path} is not a feature store: it lacks array {name!r} (docs/stores.md)")
    clips, frames = shard["clip_index"].shape[0], shard["frame_index"].shape[0]
    check_array(path, "clip_index", shard["clip_index"], "int64", (clips,))
    check_array(path, "frame_index", shard["frame_index"], "int64", (frames,))
    frame_count = None
    if FRAME_COUNT in present:
        check_array(path, FRAME_COUNT, shard[FRAME_COUNT], "int64", (clips,))
        frame_count = shard[FRAME_COUNT][:]
    keys = feature_keys(shard.attrs.get("layers", []), shard.attrs.get("captures", [OUTPUT]))
    layers = {key: shard[layer_key(*key)] for key in keys if layer_key(*key) in present}
    for key, array in layers.items():
        check_array(path, layer_key(*key), array, "float16", (clips, frames, None, None, None))
    return _Shard(shard["clip_index"][:], shard["frame_index"][:], frame_count, layers)


class FeatureStore:
    """The shards of one (dataset, model, timestep), read as one lazy store ordered by ``clip_index``."""

    def __init__(self, shard_paths: Sequence[str | os.PathLike]) -> None:
        if not shard_paths:
            raise StoreError("no feature-store shards given")
        self.paths = [Path(p) for p in shard_paths]
        self.shards = [open_complete(p, what="feature store", rerun="extraction job") for p in self.paths]
        self._index = [_read_shard(path, shard) for path, shard in zip(self.paths, self.shards, strict=True)]
        self._written: set[tuple[int, int, int]] = set()
        self._check_consistent()

    def _check_consistent(self) -> None:
        first = self.shards[0]
        for path, shard in zip(self.paths[1:], self.shards[1:], strict=True):
            for key in ("model", "timestep", "layers", "captures"):
                if shard.attrs.get(key) != first.attrs.get(key):
                    raise StoreError(f"{path}: attribute {key}={shard.attrs.get(key)!r} differs from "
                                     f"{self.paths[0]}'s {first.attrs.get(key)!r}")
        longest = self.frame_index
        for path, index in zip(self.paths, self._index, strict=True):
            if not np.array_equal(index.frame_index, longest[:len(index.frame_index)]):
                raise StoreError(f"{path}: frame_index {index.frame_index.tolist()} is not a prefix of the longest "
                                 f"shard's {longest.tolist()}")

    @cached_property
    def attrs(self) -> dict[str, Any]:
        return dict(self.shards[0].attrs)

    @property
    def layers(self) -> list[int]:
        return list(self.attrs["layers"])

    @property
    def captures(self) -> list[str]:
        """What each layer holds (``output``, attention captures); stores before captures: outputs only."""
        return list(self.attrs.get("captures", [OUTPUT]))

    @cached_property
    def frame_index(self) -> np.ndarray:
        """The clip frame of each feature frame of a full-length clip (shorter clips have a prefix)."""
        return max((index.frame_index for index in self._index), key=len)

    @cached_property
    def frame_counts(self) -> np.ndarray:
        """Feature frames of each row (clip_index order); a store without ``frame_count`` is full length."""
        return np.concatenate([index.frame_count if index.frame_count is not None
                               else np.full(len(index.clip_index), len(self.frame_index)) for index in self._index])

    def frame_count(self, clip: int) -> int:
        """Feature frames of clip-store clip ``clip``: a prefix of :attr:`frame_index`."""
        return int(self.frame_counts[self.rows_of([clip])[0]])

    @cached_property
    def clip_index(self) -> np.ndarray:
        return np.concatenate([index.clip_index for index in self._index])

    @cached_property
    def _row_of(self) -> dict[int, int]:
        return {int(c): row for row, c in enumerate(self.clip_index)}

    def rows_of(self, clips: Sequence[int]) -> np.ndarray:
        """Rows of :meth:`layer` holding the given clip-store clips; a clip not extracted is an error."""
        row_of = self._row_of
        absent = [int(c) for c in clips if int(c) not in row_of]
        if absent:
            raise StoreError(f"feature store {self.paths[0].parent}: clips {absent[:10]} were not extracted")
        return np.asarray([row_of[int(c)] for c in clips], dtype=np.int64)

    def read(self, layer: int, rows: Sequence[int], capture: str = OUTPUT) -> np.ndarray:
        """(len(rows), T', h, w, C) float16 of rows of :meth:`layer`, one shard read per clip."""
        self._check_layer(layer, capture)
        return np.stack([self._array(shard, layer, capture)[local] for shard, local in map(self._locate, rows)])

    def read_frames(self, layer: int, clip: int, positions: Sequence[int], capture: str = OUTPUT) -> np.ndarray:
        """(len(positions), h, w, C) float16: feature frames ``positions`` of clip-store clip ``clip``, reading
        only their chunks (one chunk per feature frame), or their span when it is small."""
        self._check_layer(layer, capture)
        row = self.rows_of([clip])[0]
        count = int(self.frame_counts[row])
        beyond = [int(p) for p in positions if not 0 <= int(p) < count]
        if beyond:
            raise StoreError(f"feature store {self.paths[0].parent}: clip {clip} has {count} feature frames "
                             f"(clip frames {self.frame_index[:count].tolist()}); feature frame(s) {beyond} asked")
        shard, local = self._locate(row)
        array = self._array(shard, layer, capture)
        what = f"feature store {self.paths[shard]}: clip {clip}, layer {layer}" + (
            "" if capture == OUTPUT else f" {capture}")
        if (shard, layer, capture, local) not in self._written:
            if not shard_written(self.paths[shard], array, local):
                raise StoreError(f"{what} is missing on disk (a damaged store: remove it and rerun its extraction)")
            self._written.add((shard, layer, capture, local))
        return require_finite(read_frames(array, [local], positions)[0], what)

    def _locate(self, row: int) -> tuple[int, int]:
        """(shard, row inside that shard) of a row of :meth:`layer`."""
        shard = int(np.searchsorted(self._row_offsets, row, side="right")) - 1
        return shard, int(row - self._row_offsets[shard])

    def _array(self, shard: int, layer: int, capture: str = OUTPUT) -> zarr.Array:
        """Shard ``shard``'s array of (layer, capture), opened once at open (complete stores never change)."""
        return self._index[shard].layers[layer, capture]

    @cached_property
    def _row_offsets(self) -> np.ndarray:
        """First row of each shard in :meth:`layer`'s clip order."""
        return np.cumsum([0] + [len(index.clip_index) for index in self._index])

    def _check_layer(self, layer: int, capture: str = OUTPUT) -> None:
        if layer not in self.layers:
            raise StoreError(f"feature store {self.paths[0].parent}: no layer {layer}; it has {self.layers}")
        if capture not in self.captures:
            raise StoreError(f"feature store {self.paths[0].parent}: no capture {capture!r}; it has {self.captures}")

    def layer(self, layer: int, capture: str = OUTPUT) -> da.Array:
        """Lazy (clips, T', h, w, C) float16 array over all shards, chunked one feature frame per chunk:
        the out-of-core view for Dask and xarray users (probes use :meth:`read`)."""
        self._check_layer(layer, capture)
        key = (layer, capture)
        full = next((index.layers[key] for index in self._index if key in index.layers), None)
        if full is None:
            raise StoreError(f"feature store {self.paths[0].parent}: every clip was skipped; no features")
        return da.concatenate([da.from_zarr(index.layers[key]) if key in index.layers
                               else da.zeros((len(index.clip_index), *full.shape[1:]), dtype=full.dtype,
                                             chunks=full.chunks)
                               for index in self._index], axis=0)


def open_feature_store(shard_paths: Sequence[str | os.PathLike]) -> FeatureStore:
    """Open the complete shards of one (dataset, model, timestep); refuse incomplete ones."""
    return FeatureStore(shard_paths)
