"""uint8 frame operations shared by the image preprocessors, in NumPy and PIL (no torch, no transformers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESCALE_FACTOR = 1 / 255


def normalisation_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, 256) float32: channel c of byte v -> (v / 255 - mean[c]) / std[c], computed as transformers does
    (rescale in float64 then cast to float32; subtract and divide in float32)."""
    scaled = (np.arange(256, dtype=np.float64) * RESCALE_FACTOR).astype(np.float32)
    return (scaled[None] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def normalise_uint8(frames: np.ndarray, mean: Sequence[float], std: Sequence[float], *,
                    channels_first: bool = False) -> np.ndarray:
    """(N, H, W, 3) uint8 -> float32 normalised, (N, H, W, 3) or (N, 3, H, W).

    A lookup per byte: bit-identical to the arithmetic on every pixel, and 2-3x faster.
    """
    table = normalisation_table(mean, std)
    return np.stack([table[c][frames[..., c]] for c in range(3)], axis=1 if channels_first else -1)


def resize_uint8(frames: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """(N, H, W, 3) uint8 resized with PIL to ``size`` = (height, width), as the PIL image processors do."""
    height, width = size
    from PIL import Image  # imported where used: planning a workflow imports the extractors

    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(
        (width, height), resample=resample, reducing_gap=None)) for frame in frames])
