"""Which frames of a clip: the paper's query frames and even sampling (docs/data.md, docs/tasks.md)."""

from __future__ import annotations

import numpy as np

QUERY_STRIDE = 4  # a causal video VAE's temporal compression: latent k + 1 starts at frame 1 + 4k
CONTEXT_FRAMES = 76  # the paper's context window


def query_frames(num_frames: int, context_frames: int = CONTEXT_FRAMES, stride: int = QUERY_STRIDE) -> list[int]:
    """The paper's query frames: 0, then 1 + stride*k, inside the first ``context_frames`` frames of a clip
    of ``num_frames`` frames (0, 1, 5, ..., 73 for 81 frames)."""
    limit = min(num_frames, context_frames)
    return [0] + list(range(1, limit, stride))


def evenly_spaced(available: int, count: int | None) -> np.ndarray:
    """``count`` frame indices spread evenly over ``available`` frames (first and last included, rounded
    linspace), or every frame when ``count`` is None or not smaller than ``available``."""
    if count is None or count >= available:
        return np.arange(available)
    return np.round(np.linspace(0, available - 1, count)).astype(np.int64)
