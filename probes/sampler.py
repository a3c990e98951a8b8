"""The frame protocol: which views of a clip form one probe sample (docs/tasks.md).

A sample is ``views`` clip frames inside the context window (the first ``window`` frames of the clip):
the first view is frame 0, consecutive views are at least ``min_gap`` frames apart, and the slack left over
is spread over the gaps uniformly at random. Each view is then snapped down onto the query-frame lattice
(``0, 1, 1 + s, 1 + 2s, ...`` with ``s = snap_stride``: ``floor((v - 1) / s) * s + 1``, 0 stays 0), which
is where VLMs see frames and where a VGM latent frame starts. ``min_gap >= snap_stride`` keeps snapped views
distinct.

Clips may differ in length: each clip is sampled within its own frames. When views snap onto the lattice,
a clip is used only up to its last whole lattice step (``floor((L - 1) / s) * s + 1`` frames): a view's
features may stand for the ``s`` frames that start at it (a VGM latent frame), and those must be the clip's.

Training samples draw fresh views every epoch; validation views are drawn once from ``val_seed`` (0 is a
seed like any other) so every probe and every source is scored on the same views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from dataclasses import dataclass
from typing import Any

import numpy as np


class SamplerError(ValueError):
    """Frame-protocol settings that cannot produce a sample, or a source that lacks a sampled frame."""


@dataclass(frozen=True)
class FrameProtocol:
    views: int = 4
    min_gap: int = 5
    window: int = 76
    snap_stride: int = 4  # 0 = no snapping
    val_seed: int = 0

    def __post_init__(self) -> None:
        for key in ("views", "min_gap", "window"):
            if getattr(self, key) < 1:
                raise SamplerError(f"frame protocol: {key}={getattr(self, key)} must be >= 1")
        if self.snap_stride < 0 or self.val_seed < 0:
            raise SamplerError("frame protocol: snap_stride and val_seed must be >= 0")
        if self.views > 1 and self.snap_stride and self.min_gap < self.snap_stride:
            raise SamplerError(f"frame protocol: min_gap={self.min_gap} < snap_stride={self.snap_stride} could "
                               "snap two views onto one frame; raise min_gap or lower snap_stride")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FrameProtocol:
        return cls(**{key: int(options[key]) for key in cls.__dataclass_fields__ if key in options})

    @property
    def frames_needed(self) -> int:
        """Frames one sample spans at least."""
        return (self.views - 1) * self.min_gap + 1

    def usable(self, num_frames: int) -> int:
        """Frames of a clip of ``num_frames`` that views may fall on: up to its last whole lattice step."""
        if not self.snap_stride or num_frames < 1:
            return num_frames
        return (num_frames - 1) // self.snap_stride * self.snap_stride + 1

    def span(self, num_frames: int, clip: str | None = None) -> int:
        """Frames available to sampling in a clip of ``num_frames`` (the window, or the clip if shorter)."""
        span = min(self.window, self.usable(num_frames))
        if self.frames_needed > span:
            which = f"clip {clip!r} has {num_frames} frames" if clip is not None else f"a clip of {num_frames} frames"
            raise SamplerError(f"frame protocol: {self.views} views with min_gap {self.min_gap} need "
                               f"{self.frames_needed} frames, but {which} (window {self.window}, usable "
                               f"{span}); lower views or min_gap, or drop short clips (dataset min_frames)")
        return span

    def reachable(self, num_frames: int) -> set[int]:
        """Every frame a view can land on in a clip of ``num_frames`` frames (after snapping)."""
        return {self.snap(v) for v in range(min(self.window, self.usable(num_frames)))}

    def check_clips(self, lengths: Mapping[str, int]) -> None:
        """Raise :class:`SamplerError` naming the shortest clip when it cannot hold one sample."""
        if lengths:
            clip = min(lengths, key=lambda c: lengths[c])
            self.span(int(lengths[clip]), clip=clip)

    def snap(self, frame: int) -> int:
        if frame == 0 or not self.snap_stride:
            return frame
        return (frame - 1) // self.snap_stride * self.snap_stride + 1

    def draw(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """One sample's view frames (ascending, first = 0)."""
        slack = self.span(num_frames) - 1 - (self.views - 1) * self.min_gap
        extra = np.sort(rng.integers(0, slack + 1, size=self.views - 1))
        raw = np.concatenate([[0], np.arange(1, self.views) * self.min_gap + extra])
        return np.array([self.snap(int(v)) for v in raw], dtype=np.int64)

    def training_views(self, clips: Sequence[int], lengths: int | Sequence[int], seed: int, epoch: int,
                       draws: int = 1) -> list[tuple[int, np.ndarray]]:
        """``draws`` samples per clip for one epoch, reproducible from (seed, epoch). ``lengths`` is every
        clip's frame count indexed by clip (or one count for all)."""
        rng = np.random.default_rng([seed, epoch, 1])
        return [(int(c), self.draw(_length(lengths, c), rng)) for c in clips for _ in range(draws)]

    def validation_views(self, clips: Sequence[int], lengths: int | Sequence[int]) -> list[tuple[int, np.ndarray]]:
        """One fixed sample per clip; the same for every probe, source and run."""
        return [(int(c), self.draw(_length(lengths, c), np.random.default_rng([self.val_seed, int(c), 2])))
                for c in clips]


def _length(lengths: int | Sequence[int], clip: int) -> int:
    return int(lengths) if isinstance(lengths, Integral) else int(lengths[int(clip)])


def feature_rows(frame_index: np.ndarray, views: np.ndarray, source: str) -> np.ndarray:
    """Positions in a source's feature frames of the clip frames ``views``; a clear error when one is missing."""
    position = {int(f): i for i, f in enumerate(frame_index)}
    missing = [int(v) for v in views if int(v) not in position]
    if missing:
        raise SamplerError(f"source {source!r} has no feature frame for clip frame(s) {missing}; its frames are "
                           f"{[int(f) for f in frame_index]} (enable snapping to the query-frame lattice, or "
                           "extract those frames)")
    return np.array([position[int(v)] for v in views], dtype=np.int64)
