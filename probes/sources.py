"""Feature sources: one cached (model, timestep, layer) array, addressed by a path-safe id.

A source id reads ``{model}@{timestep}@L{layer}``, e.g. ``random-patch@none@L1`` or ``wan-tiny@t500@L20``;
``timestep`` is ``none`` for models without noise. Probes see a source only through
:class:`FeatureSource`, which maps feature frames to clip frames through the store's ``frame_index`` so a
probe never needs to know which model made a store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extractors.featurestore import FeatureStore
from probes.sampler import feature_rows

_SOURCE_RE = re.compile(r"^(?P<model>[^@/]+)@(?P<timestep>none|t\d+)@L(?P<layer>\d+)$")


@dataclass(frozen=True)
class SourceId:
    model: str
    timestep: str
    layer: int

    def __str__(self) -> str:
        return f"{self.model}@{self.timestep}@L{self.layer}"

    @classmethod
    def parse(cls, text: str) -> SourceId:
        match = _SOURCE_RE.match(text)
        if not match:
            raise ValueError(f"bad source id {text!r}; expected '<model>@<none|t<int>>@L<layer>'")
        return cls(match["model"], match["timestep"], int(match["layer"]))


class FeatureSource:
    """The features of one source for any clips of the clip store, as float32 NumPy arrays."""

    def __init__(self, source: SourceId, shard_paths: Sequence[str | Path]) -> None:
        self.id = source
        self.store = FeatureStore(shard_paths)
        self.array = self.store.layer(source.layer)  # lazy view: shapes, and out-of-core use

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
    def attrs(self) -> dict:
        return self.store.attrs

    def views(self, clip: int, frames: Sequence[int]) -> np.ndarray:
        """(len(frames), h, w, C) float32 features standing for clip frames ``frames`` of clip ``clip``
        (matched through ``frame_index``), reading only those feature frames."""
        positions = feature_rows(self.frame_index, np.asarray(frames), str(self.id))
        return self.store.read_frames(self.id.layer, clip, positions).astype(np.float32)
