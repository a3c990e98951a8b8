"""Qwen-VL (Qwen2.5-VL, Qwen3-VL) pixel preprocessing in NumPy + PIL, without torch or transformers.

It reproduces ``transformers.Qwen2VLImageProcessorPil`` (transformers 5.x) bit for bit, so features can be
extracted from frames we already hold as uint8 arrays without building a processor. The installed
processor does, per image:

1. ``smart_resize``: round H and W to multiples of ``factor = patch_size * merge_size``, then rescale
   (keeping aspect) into ``[min_pixels, max_pixels]``;
2. PIL ``Image.resize`` with BICUBIC (resample=3) and no ``reducing_gap``, on the uint8 image;
3. rescale: ``(x.astype(float64) * (1/255)).astype(float32)``;
4. normalise in float32: ``(x - mean) / std`` with ``mean``/``std`` cast to float32;
5. patchify: a single image is repeated ``temporal_patch_size`` times along time (a zero-copy broadcast
   there, a copy here; the values are the same).

Token order. Frames (T, H, W, C) are viewed as (gt, tps, gh/m, m, p, gw/m, m, p, C) and permuted to
(gt, gh/m, gw/m, m, m, C, tps, p, p), then flattened to (gt*gh*gw, C*tps*p*p). So tokens run over
time steps, then merge windows in row-major order, then the m*m patches of each window row-major; token
``k`` of one time step holds patch (row, col) with::

    window, within = divmod(k, m * m)
    row = (window // (gw // m)) * m + within // m
    col = (window % (gw // m)) * m + within % m

and each token's vector is laid out (C, tps, p, p). This matches the Qwen3-VL video processor's
``patchify`` (permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9) of the channel-first view) and the image processor's.

Defaults. The installed transformers has one image processor class for every Qwen-VL version, and its
class defaults are ``size = {"shortest_edge": 56*56 = 3136, "longest_edge": 28*28*1280 = 1003520}``,
patch 14, merge 2, temporal patch 2, CLIP mean/std. Those are the defaults here for both presets (only
patch size and mean/std differ by version). Released checkpoints override the pixel range in their
``preprocessor_config.json`` (Qwen2.5-VL: min_pixels 3136, max_pixels 12845056; Qwen3-VL:
size shortest_edge 65536, longest_edge 16777216); use :meth:`QwenPatchifier.from_preprocessor_config`
to get a checkpoint's exact settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from extractors.imaging import RESCALE_FACTOR, normalise_uint8, resize_uint8

# transformers.image_utils.OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, copied so this module needs no transformers.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
# Qwen2VLImageProcessorPil.size class defaults (shortest_edge, longest_edge), in pixels.
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the processor's resample
MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The (height, width) the processor resizes to: multiples of ``factor``, area within the pixel range.

    Same arithmetic as ``transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.smart_resize``
    (including Python's round-half-to-even); it raises a ValueError where that function would divide by
    zero or return a zero side.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width} (HxW) is empty; both sides must be >= 1 pixel")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"image size {height}x{width} (HxW): absolute aspect ratio must be smaller than "
                         f"{MAX_ASPECT_RATIO}, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar < factor or w_bar < factor:
        # Only reachable with min_pixels below factor**2: a side rounds to 0 and nothing scales it back up.
        raise ValueError(f"image size {height}x{width} (HxW) is too small: it resizes to {h_bar}x{w_bar}, "
                         f"below one {factor}x{factor} merge window; raise min_pixels ({min_pixels})")
    return h_bar, w_bar


@dataclass(frozen=True)
class QwenPatchifier:
    """Resize + normalise + patchify uint8 RGB frames exactly like the Qwen-VL image processor."""

    patch_size: int  # 14 (Qwen2.5-VL) or 16 (Qwen3-VL)
    merge_size: int = 2
    temporal_patch_size: int = 2
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    min_pixels: int = DEFAULT_MIN_PIXELS  # the installed processor's size["shortest_edge"] default
    max_pixels: int = DEFAULT_MAX_PIXELS  # the installed processor's size["longest_edge"] default

    def __post_init__(self) -> None:
        for name in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")
        # Tuples keep the frozen instance hashable when a config hands us lists.
        object.__setattr__(self, "mean", _three_floats("mean", self.mean))
        object.__setattr__(self, "std", _three_floats("std", self.std))
        if 0.0 in self.std:
            raise ValueError(f"std must be non-zero, got {self.std}")

    @classmethod
    def qwen2_5_vl(cls, **overrides: Any) -> QwenPatchifier:
        """Qwen2.5-VL: patch 14, merge 2, CLIP mean/std, the processor's default pixel range."""
        return cls(**{"patch_size": 14, "mean": OPENAI_CLIP_MEAN, "std": OPENAI_CLIP_STD, **overrides})

    @classmethod
    def qwen3_vl(cls, **overrides: Any) -> QwenPatchifier:
        """Qwen3-VL: patch 16, merge 2, mean = std = 0.5, the processor's default pixel range."""
        return cls(**{"patch_size": 16, "mean": HALF, "std": HALF, **overrides})

    @classmethod
    def from_preprocessor_config(cls, config: dict, **overrides: Any) -> QwenPatchifier:
        """Settings from a checkpoint's ``preprocessor_config.json`` dict, as the installed processor reads it.

        Pixel range precedence (the processor's): top-level ``min_pixels``/``max_pixels``, then
        ``size["shortest_edge"]``/``size["longest_edge"]``; we also accept the legacy
        ``size["min_pixels"]``/``size["max_pixels"]`` (which the installed processor rejects on its own)
        and fall back to the class defaults for anything missing. Keys we cannot honour (no resize,
        rescale or normalise, another resample or rescale factor) raise rather than silently differ.
        """
        _check_supported(config)
        size = config.get("size") or {}
        settings = {
            "patch_size": config.get("patch_size", 14),  # processor class default
            "merge_size": config.get("merge_size", 2),
            "temporal_patch_size": config.get("temporal_patch_size", 2),
            "mean": tuple(config.get("image_mean", OPENAI_CLIP_MEAN)),
            "std": tuple(config.get("image_std", OPENAI_CLIP_STD)),
            "min_pixels": _first(config.get("min_pixels"), size.get("shortest_edge"), size.get("min_pixels"),
                                 DEFAULT_MIN_PIXELS),
            "max_pixels": _first(config.get("max_pixels"), size.get("longest_edge"), size.get("max_pixels"),
                                 DEFAULT_MAX_PIXELS),
        }
        return cls(**{**settings, **overrides})

    @property
    def factor(self) -> int:
        """Resized sides are multiples of this: one merge window of patches."""
        return self.patch_size * self.merge_size

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) in pixels after ``smart_resize``."""
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def grid(self, height: int, width: int, *, merged: bool = False) -> tuple[int, int]:
        """(grid_h, grid_w) in patches for an input of ``height`` x ``width`` pixels; with ``merged``, in
        merge windows (``merge_size`` x ``merge_size`` patches: one language-model token each)."""
        resized_h, resized_w = self.resized_size(height, width)
        cell = self.patch_size * (self.merge_size if merged else 1)
        return resized_h // cell, resized_w // cell

    def images(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every frame as its own image: pixel_values (N*gh*gw, C*tps*p*p) float32, grid_thw (N, 3) int64.

        Each image is repeated ``temporal_patch_size`` times to fill its temporal patch (grid_t = 1), as
        the processor does; tokens of frame 0 come first, then frame 1, and so on.
        """
        pixels = self._normalised(frames)
        repeated = np.repeat(pixels, self.temporal_patch_size, axis=0)
        grid_h, grid_w = pixels.shape[1] // self.patch_size, pixels.shape[2] // self.patch_size
        grid_thw = np.tile(np.array([[1, grid_h, grid_w]], dtype=np.int64), (len(frames), 1))
        return self._patchify(repeated), grid_thw

    def video(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames as one video: consecutive groups of ``temporal_patch_size`` frames share a temporal patch.

        Returns pixel_values (gt*gh*gw, C*tps*p*p) float32 and grid_thw [[N/tps, gh, gw]] int64. Frames
        are resized with the image ``smart_resize`` and pixel range (not the video processor's
        frame-count-aware budget); pass min/max pixels to match a video processor's output size.
        """
        frames = _check_frames(frames)
        if len(frames) % self.temporal_patch_size:
            raise ValueError(f"video has {len(frames)} frames; the count must be a multiple of "
                             f"temporal_patch_size={self.temporal_patch_size} (each temporal patch takes "
                             f"{self.temporal_patch_size} consecutive frames); drop or repeat frames first")
        pixels = self._normalised(frames)
        grid_h, grid_w = pixels.shape[1] // self.patch_size, pixels.shape[2] // self.patch_size
        grid_thw = np.array([[len(frames) // self.temporal_patch_size, grid_h, grid_w]], dtype=np.int64)
        return self._patchify(pixels), grid_thw

    def _normalised(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H', W', 3) float32, resized (PIL BICUBIC, the call transformers' PIL
        backend makes), rescaled and normalised as the processor does (bit-identical by lookup table)."""
        frames = _check_frames(frames)
        height, width = self.resized_size(frames.shape[1], frames.shape[2])
        return normalise_uint8(resize_uint8(frames, (height, width), BICUBIC), self.mean, self.std)

    def _patchify(self, pixels: np.ndarray) -> np.ndarray:
        """(T, H, W, C) float32 with T a multiple of tps -> (gt*gh*gw, C*tps*p*p); see the module docstring."""
        frames, height, width, channels = pixels.shape
        tps, m, p = self.temporal_patch_size, self.merge_size, self.patch_size
        view = pixels.reshape(frames // tps, tps, height // (m * p), m, p, width // (m * p), m, p, channels)
        # (gt, tps, gh/m, mh, ph, gw/m, mw, pw, C) -> (gt, gh/m, gw/m, mh, mw, C, tps, ph, pw)
        ordered = view.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
        tokens = (frames // tps) * (height // p) * (width // p)
        return ordered.reshape(tokens, channels * tps * p * p)  # copies: the transpose is not contiguous


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """Reject anything but a non-empty (N, H, W, 3) uint8 array, naming what was given."""
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array (N, H, W, 3) uint8, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (N, H, W, 3) (RGB, channels last), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 in [0, 255], got dtype {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty: need at least one frame")
    return frames


def _three_floats(name: str, values: Any) -> tuple[float, float, float]:
    values = tuple(float(v) for v in np.ravel(values))
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {len(values)}")
    return values  # type: ignore[return-value]


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _check_supported(config: dict) -> None:
    """Config switches that would change the result in ways this module does not implement."""
    problems = [f"{key}={config[key]!r}" for key in ("do_resize", "do_rescale", "do_normalize")
                if key in config and not config[key]]
    if config.get("resample", BICUBIC) != BICUBIC:
        problems.append(f"resample={config['resample']!r} (only {BICUBIC}, BICUBIC)")
    if config.get("rescale_factor", RESCALE_FACTOR) != RESCALE_FACTOR:
        problems.append(f"rescale_factor={config['rescale_factor']!r} (only 1/255)")
    if problems:
        raise ValueError(f"unsupported preprocessor config: {', '.join(problems)}")
