"""Calibration sources: what a probe scores with perfect features and with none.

- ``oracle``: the ground truth itself, encoded as features (area-averaged to a grid of ``patch_size``
  pixels): log depth and the point in frame 0's camera frame, both scaled so frame 0's mean point norm is 1
  (1 + 3 channels, the normalisation of the geometry targets: :func:`clipstore.camera.first_view_frame`),
  class fractions (one channel per class), an instance embedding (``instance_dims`` channels: a fixed
  random unit vector per instance of the clip, 0 on void), and the camera of the frame relative to frame 0
  (12: ``[R | t]`` with t on the same scale, constant over the frame). Every task's targets are a linear
  function of these for samples whose first view is frame 0, as the frame protocol draws them; a probe that
  misses near-perfect scores on the oracle has a metric, alignment or training bug.
- ``noise``: seeded Gaussian noise of the source's grid shape that ignores the clip; probes on it score
  at chance.

Neither reads pixels, and neither is a model: they are labelled ``oracle`` and ``baseline`` in tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from clipstore.camera import FirstViewFrame, first_view_frame
from clipstore.grid import resample
from extractors.base import ClipFeatures, Extractor, OptionError


def _grid(height: int, width: int, patch: int, name: str) -> tuple[int, int]:
    if height % patch or width % patch:
        raise OptionError(f"model {name!r}: patch_size {patch} does not divide the {height}x{width} frames")
    return height // patch, width // patch


class CalibrationSource(Extractor):
    """One feature cell per ``patch_size`` patch; frames the patch does not divide are refused."""

    def feature_grid(self, height: int, width: int) -> tuple[int, int] | None:
        try:
            return _grid(height, width, self.options["patch_size"], self.name)
        except OptionError:
            return None


class OracleExtractor(CalibrationSource):
    """Channels: 1 + 3 (geometry) + one per class of the dataset + ``instance_dims`` + 12 (camera); the class
    count comes from the clip store (``tag_counts``), so :meth:`channels` and :meth:`feature_shape` say None."""

    family = "oracle"
    paradigm = "oracle"
    inputs = ("depth", "points", "extrinsics", "semantic", "instance", "tag_counts")
    frame_per_clip_frame = True
    default_options: ClassVar[dict[str, Any]] = {"patch_size": 4, "instance_dims": 16}

    def validate_options(self) -> None:
        self.positive_int_option("patch_size")
        self.positive_int_option("instance_dims")

    def num_layers(self) -> int:
        return 1

    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        raise OptionError(f"model {self.name!r}: the oracle encodes ground truth, not frames")

    def extract_clip(self, arrays: Mapping[str, np.ndarray], layers: tuple[int, ...],
                     timesteps: tuple[int | None, ...], *, clip: int = 0,
                     frame_maps: Mapping[str, np.ndarray] | None = None) -> dict[int | None, ClipFeatures]:
        frames, height, width = arrays["depth"].shape
        frame_index = np.arange(frames) if frame_maps is None else np.asarray(frame_maps["depth"])
        grid = _grid(height, width, self.options["patch_size"], self.name)
        frame = first_view_frame(arrays["depth"], arrays["points"], arrays["extrinsics"])
        channels = np.concatenate([self._geometry(arrays["depth"], frame), self._classes(arrays),
                                   self._instances(arrays["instance"], clip)], axis=-1)
        cells = resample(channels, grid, axes=(1, 2), method="area")
        cameras = frame.extrinsics.reshape(frames, 1, 1, 12)
        cells = np.concatenate([cells, np.broadcast_to(cameras, (*cells.shape[:3], 12))], axis=-1)
        return {t: ClipFeatures({0: cells.astype(np.float32)}, frame_index) for t in timesteps}

    @staticmethod
    def _geometry(depth: np.ndarray, frame: FirstViewFrame) -> np.ndarray:
        log_depth = np.log(np.where(frame.valid, depth / frame.scale, 1.0))
        return np.concatenate([log_depth[..., None], np.where(frame.valid[..., None], frame.points, 0.0)], axis=-1)

    @staticmethod
    def _classes(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        classes = arrays["tag_counts"].shape[-1]
        return (arrays["semantic"][..., None] == np.arange(classes)).astype(np.float64)

    def _instances(self, instance: np.ndarray, clip: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, clip, 0x0AC1E])
        vectors = rng.standard_normal((int(instance.max()) + 1, self.options["instance_dims"]))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors[0] = 0.0  # void
        return vectors[instance]


class NoiseExtractor(CalibrationSource):
    family = "noise"
    paradigm = "baseline"
    frame_per_clip_frame = True
    default_options: ClassVar[dict[str, Any]] = {"patch_size": 8, "channels": 64}

    def validate_options(self) -> None:
        self.positive_int_option("patch_size")
        self.positive_int_option("channels")

    def num_layers(self) -> int:
        return 1

    def channels(self) -> int:
        return self.options["channels"]

    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        grid = _grid(frames.shape[1], frames.shape[2], self.options["patch_size"], self.name)
        noise = np.random.default_rng([self.seed, clip, 0x40153]).standard_normal(
            (len(frames), *grid, self.options["channels"]))
        return ClipFeatures({0: noise.astype(np.float32)}, np.arange(len(frames)))


EXTRACTORS = (OracleExtractor, NoiseExtractor)
