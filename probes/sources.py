"""Feature sources: what a probe reads, through one small interface (docs/sources.md).

A source is either one cached (model, timestep, layer) array of a feature store (:class:`FeatureSource`) or
a fusion of several such arrays (:class:`probes.fusion.FusedSource`). Both have an id
(``{name}@{timestep}@L{layer}``, grammar in :mod:`extractors.ids`), a ``frame_index`` (the clip frame each
feature frame stands for), a token ``grid``, ``channels``, provenance ``attrs``, and ``views(clip, frames)``,
so a probe never needs to know which model, or which mix of models, made its features.

The workflow describes a source to a probe job as a JSON *spec*: ``{"id", "stores"}`` for a cached array
(a materialised fusion included), ``{"id", "fusion", "branches": [spec, ...]}`` for a fusion computed on
the fly; :func:`open_source` opens either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from extractors.featurestore import FeatureStore
from extractors.ids import SourceId
from probes.sampler import feature_rows

__all__ = ["FeatureSource", "Source", "SourceId", "open_source", "spec_stores"]

# Provenance every source's attrs hold; probe runs copy them into metrics.json.
PROVENANCE_KEYS = ("model", "family", "paradigm", "checkpoint", "timestep", "random_init", "seed", "compression")


class Source(Protocol):
    """What a probe sees of a feature source."""

    id: SourceId

    @property
    def frame_index(self) -> np.ndarray: ...  # (T',) clip frame of each feature frame, increasing

    @property
    def grid(self) -> tuple[int, int]: ...  # (h, w) tokens per feature frame

    @property
    def channels(self) -> int: ...

    @property
    def attrs(self) -> dict[str, Any]: ...  # provenance: PROVENANCE_KEYS and more

    def frame_count(self, clip: int) -> int:
        """Feature frames clip-store clip ``clip`` has: ``frame_index[:count]`` (0 for a skipped clip)."""
        ...

    def views(self, clip: int, frames: Sequence[int]) -> np.ndarray:
        """(len(frames), h, w, C) float32 features of clip-store clip ``clip`` at clip frames ``frames``."""
        ...


class FeatureSource:
    """One cached array of the shards of one (dataset, model, timestep) feature store."""

    def __init__(self, source: SourceId, shard_paths: Sequence[str | os.PathLike]) -> None:
        self.id = source
        self.store = FeatureStore(shard_paths)
        self.array = self.store.layer(source.layer, source.capture)  # lazy view: shapes, and out-of-core use

    @property
    def frame_index(self) -> np.ndarray:
        return self.store.frame_index

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.array.shape[2:4])

    @property
    def channels(self) -> int:
        return int(self.array.shape[-1])

    @property
    def attrs(self) -> dict[str, Any]:
        return self.store.attrs

    def frame_count(self, clip: int) -> int:
        return self.store.frame_count(clip)

    def views(self, clip: int, frames: Sequence[int]) -> np.ndarray:
        """Matched through ``frame_index``, reading only those feature frames."""
        positions = feature_rows(self.frame_index, np.asarray(frames), str(self.id))
        return self.store.read_frames(self.id.layer, clip, positions, self.id.capture).astype(np.float32)


def open_source(spec: Mapping[str, Any]) -> Source:
    """The source a spec describes (module docstring); a fusion opens each of its branches."""
    if "fusion" in spec:
        from probes.fusion import FusedSource, Fusion

        return FusedSource(Fusion.from_json(spec["fusion"]), [open_source(branch) for branch in spec["branches"]])
    return FeatureSource(SourceId.parse(spec["id"]), [Path(p) for p in spec["stores"]])


def spec_stores(spec: Mapping[str, Any]) -> list[str]:
    """Every feature-store shard a spec reads (a probe job's inputs)."""
    if "fusion" in spec:
        return [path for branch in spec["branches"] for path in spec_stores(branch)]
    return [str(p) for p in spec["stores"]]
