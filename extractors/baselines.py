"""Feature sources that need no model: controls every results table should carry.

- ``pixels``: the RGB of each grid cell, area-averaged; what a probe gets from raw colour alone.
- ``random-patch``: a fixed, seeded random projection of pixel patches followed by random ReLU layers;
  the classic random-feature control (how much a probe extracts from a high-dimensional random code).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from clipstore.grid import resample
from extractors.base import ClipFeatures, Extractor


def _to_unit_range(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 127.5 - 1.0


def _grid_size(frames: np.ndarray, patch: int) -> tuple[int, int]:
    height, width = frames.shape[1:3]
    if height < patch or width < patch:
        raise ValueError(f"frames of {height}x{width} pixels are smaller than one {patch}x{patch} patch")
    return height // patch, width // patch


class PatchGridBaseline(Extractor):
    """One feature cell per whole ``patch_size`` patch of the frame (a partial last row or column is
    resampled in)."""

    def feature_grid(self, height: int, width: int) -> tuple[int, int] | None:
        patch = self.options["patch_size"]
        return (height // patch, width // patch) if height >= patch and width >= patch else None


class PixelsExtractor(PatchGridBaseline):
    family = "pixels"
    paradigm = "baseline"
    frame_per_clip_frame = True
    default_options: ClassVar[dict[str, Any]] = {"patch_size": 8}

    def validate_options(self) -> None:
        self.positive_int_option("patch_size")

    def num_layers(self) -> int:
        return 1

    def channels(self) -> int:
        return 3

    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        grid = _grid_size(frames, self.options["patch_size"])
        cells = resample(_to_unit_range(frames), grid, axes=(1, 2), method="area")
        return ClipFeatures({0: cells}, np.arange(len(frames)))


class RandomPatchExtractor(PatchGridBaseline):
    family = "random-patch"
    paradigm = "baseline"
    frame_per_clip_frame = True
    default_options: ClassVar[dict[str, Any]] = {"patch_size": 8, "channels": 64, "depth": 2}

    def validate_options(self) -> None:
        for key in self.default_options:
            self.positive_int_option(key)
        self._weights = self._draw_weights()

    def _draw_weights(self) -> list[np.ndarray]:
        # Seeded by the config seed alone, so every clip and every rerun sees the same projection.
        rng = np.random.default_rng([self.seed, 0x5EED])
        patch, channels = self.options["patch_size"], self.options["channels"]
        fan_in = [3 * patch * patch] + [channels] * (self.options["depth"] - 1)
        scales = [1.0 / np.sqrt(fan_in[0])] + [np.sqrt(2.0 / n) for n in fan_in[1:]]
        return [(rng.standard_normal((n, channels)) * s).astype(np.float32) for n, s in zip(fan_in, scales)]

    def num_layers(self) -> int:
        return self.options["depth"]

    def channels(self) -> int:
        return self.options["channels"]

    def patches(self, frames: np.ndarray) -> np.ndarray:
        """(T, gh, gw, 3*p*p) pixel patches; frames whose size is not a multiple of p are resampled."""
        patch = self.options["patch_size"]
        rows, cols = _grid_size(frames, patch)
        pixels = resample(_to_unit_range(frames), (rows * patch, cols * patch), axes=(1, 2), method="area")
        t = len(frames)
        blocks = pixels.reshape(t, rows, patch, cols, patch, 3).transpose(0, 1, 3, 2, 4, 5)
        return blocks.reshape(t, rows, cols, 3 * patch * patch)

    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        hidden = self.patches(frames) @ self._weights[0]
        captured = {0: hidden} if 0 in layers else {}
        for index in range(1, max(layers) + 1):  # stop after the deepest requested layer
            hidden = np.maximum(hidden, 0.0) @ self._weights[index]
            if index in layers:
                captured[index] = hidden
        return ClipFeatures(captured, np.arange(len(frames)))


EXTRACTORS = (PixelsExtractor, RandomPatchExtractor)
