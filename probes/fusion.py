"""Fused sources: several cached arrays (typically a video model's and a VLM's) combined token by token, read
from the feature cache with no re-extraction (docs/sources.md, "Fusions").

The recipe, the same on the fly and when materialised:

1. **Frames**: only the clip frames every branch has (the intersection of their ``frame_index``), increasing.
2. **Grid**: each branch's (h, w) token grid is area-averaged to the target grid in float32
   (:func:`clipstore.grid.resample`: exact fractional overlaps, equal to adaptive average pooling when the
   ratio is an integer; a target finer than a branch repeats its cells).
3. **Mode** ``lnconcat``: a LayerNorm over the channels of each token of each branch, without affine
   parameters, eps 1e-6. ``concat``: nothing.
4. **Channels** concatenated in the listed order.

The result is rounded to float16, the precision of every feature store, so a fusion computed on the fly
equals its materialised store exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from clipstore.grid import resample
from extractors.base import ClipFeatures
from extractors.featurestore import FeatureStoreWriter
from extractors.ids import SourceId, check_name
from probes.sampler import feature_rows
from probes.sources import PROVENANCE_KEYS, Source

FUSION_MODES = ("concat", "lnconcat")
LAYER_NORM_EPS = 1e-6


class FusionError(ValueError):
    """A fusion that cannot be built: bad settings, or branches that share no frame."""


@dataclass(frozen=True)
class Fusion:
    """One ``fusions:`` entry of the config."""

    name: str
    sources: tuple[SourceId, ...]  # branches, in concatenation order
    mode: str = "lnconcat"
    grid: tuple[int, int] | None = None  # target (h, w); None = the branch grid with the fewest tokens
    materialise: bool = False
    eps: float = field(default=LAYER_NORM_EPS)

    def __post_init__(self) -> None:
        try:
            check_name(self.name, "fusion")
        except ValueError as err:
            raise FusionError(str(err)) from None
        if self.mode not in FUSION_MODES:
            raise FusionError(f"fusion {self.name!r}: mode {self.mode!r}; use one of {list(FUSION_MODES)}")
        if len(self.sources) < 2 or len(set(self.sources)) != len(self.sources):
            raise FusionError(f"fusion {self.name!r}: needs at least two distinct sources, got "
                              f"{[str(s) for s in self.sources]}")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise FusionError(f"fusion {self.name!r}: grid {list(self.grid)} must be two positive integers [h, w]")

    @property
    def id(self) -> SourceId:
        return SourceId(self.name, "none", 0)

    @classmethod
    def from_config(cls, name: str, entry: Mapping[str, Any]) -> Fusion:
        sources = []
        for text in entry.get("sources", []):
            try:
                sources.append(SourceId.parse(text))
            except ValueError as err:
                raise FusionError(f"fusion {name!r}: {err}") from None
        grid = entry.get("grid")
        return cls(name, tuple(sources), entry.get("mode", "lnconcat"), None if grid is None else tuple(grid),
                   bool(entry.get("materialise", False)))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sources": [str(s) for s in self.sources], "mode": self.mode,
                "grid": None if self.grid is None else list(self.grid), "materialise": self.materialise,
                "eps": self.eps}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fusion:
        return cls(data["name"], tuple(SourceId.parse(s) for s in data["sources"]), data["mode"],
                   None if data["grid"] is None else tuple(data["grid"]), data["materialise"], data["eps"])


def common_frames(fusion: str, frame_maps: Mapping[str, np.ndarray]) -> np.ndarray:
    """The clip frames every branch has, increasing; an error naming every branch and its frames when
    there is none."""
    maps = [np.asarray(m, dtype=np.int64) for m in frame_maps.values()]
    common = maps[0]
    for frames in maps[1:]:
        common = np.intersect1d(common, frames)
    if common.size == 0:
        described = "; ".join(f"{name} has clip frames {m.tolist()}" for name, m in frame_maps.items())
        raise FusionError(f"fusion {fusion!r}: its sources share no frame ({described})")
    return common


def target_grid(grids: Sequence[tuple[int, int]], requested: tuple[int, int] | None) -> tuple[int, int]:
    """``requested``, or the branch grid with the fewest tokens (the first listed on a tie)."""
    if requested is not None:
        return tuple(requested)
    return tuple(min(grids, key=lambda g: g[0] * g[1]))


def layer_norm(x: np.ndarray, eps: float = LAYER_NORM_EPS) -> np.ndarray:
    """LayerNorm over the last axis without affine parameters (biased variance, as torch's)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    return centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)


def fuse_views(views: Sequence[np.ndarray], grid: tuple[int, int], mode: str,
               eps: float = LAYER_NORM_EPS) -> np.ndarray:
    """(S, h, w, sum C) fused features of each branch's (S, h_i, w_i, C_i) views, float16-rounded float32."""
    parts = []
    for branch in views:
        part = resample(np.asarray(branch, dtype=np.float32), grid, axes=(1, 2), method="area")
        parts.append(layer_norm(part, eps) if mode == "lnconcat" else part)
    return np.concatenate(parts, axis=-1).astype(np.float16).astype(np.float32)


class FusedSource:
    """A fusion computed on the fly from its branch sources; a :class:`~probes.sources.Source`."""

    def __init__(self, fusion: Fusion, branches: Sequence[Source]) -> None:
        found = [branch.id for branch in branches]
        if found != list(fusion.sources):
            raise FusionError(f"fusion {fusion.name!r}: branches {[str(s) for s in found]} differ from its "
                              f"sources {[str(s) for s in fusion.sources]}")
        self.fusion = fusion
        self.branches = list(branches)
        self.id = fusion.id
        self.frame_index = common_frames(fusion.name, {str(b.id): b.frame_index for b in branches})
        self.grid = target_grid([b.grid for b in branches], fusion.grid)
        self.channels = sum(b.channels for b in branches)

    @property
    def attrs(self) -> dict[str, Any]:
        first = self.branches[0].attrs
        return {"model": self.fusion.name, "family": "fusion", "paradigm": "fusion", "checkpoint": None,
                "timestep": None, "seed": first.get("seed"),
                "random_init": any(bool(b.attrs.get("random_init")) for b in self.branches),
                "fusion": {**self.fusion.to_json(), "grid": list(self.grid)},
                "branches": [{"source": str(b.id), "grid": list(b.grid), "channels": b.channels,
                              **{key: b.attrs.get(key) for key in PROVENANCE_KEYS}} for b in self.branches]}

    def frame_count(self, clip: int) -> int:
        """Fused frames of ``clip``: those every branch has for this clip (a prefix of ``frame_index``)."""
        lasts = []
        for branch in self.branches:
            count = branch.frame_count(clip)
            if count == 0:
                return 0
            lasts.append(int(branch.frame_index[count - 1]))
        return int(np.sum(self.frame_index <= min(lasts)))

    def views(self, clip: int, frames: Sequence[int]) -> np.ndarray:
        feature_rows(self.frame_index, np.asarray(frames), str(self.id))  # a frame some branch lacks: named error
        return fuse_views([b.views(clip, frames) for b in self.branches], self.grid, self.fusion.mode,
                          self.fusion.eps)


def write_fused_store(source: FusedSource, path: str | os.PathLike, *, clip_index: Sequence[int], dataset: str,
                      progress: bool = True) -> Path:
    """Materialise ``source`` for the clips ``clip_index`` as a standard feature store (array ``layer_0``),
    crash-safe and resumable per clip like every feature store."""
    attrs = source.attrs
    writer = FeatureStoreWriter(path, clip_index=clip_index, layers=(0,),
                                fingerprint={"fusion": attrs["fusion"], "dataset": dataset,
                                             "branches": [b["source"] for b in attrs["branches"]]})
    counts = {position: source.frame_count(int(writer.clip_index[position])) for position in writer.pending}
    for position in tqdm(sorted(counts, key=lambda p: -counts[p]), desc=f"fusion {source.fusion.name} {dataset}",
                         unit="clip", disable=not progress):  # longest first: it sizes the arrays
        if counts[position] == 0:
            writer.write_clip(position, None)
            continue
        frames = source.frame_index[:counts[position]]
        features = source.views(int(writer.clip_index[position]), frames)
        writer.write_clip(position, ClipFeatures({0: features}, frames))
    return writer.finish({**attrs, "dataset": dataset})
