"""Resampling between pixel grids and feature grids, as separable linear maps.

Every feature grid in this project spans the whole frame, so a (h, w) grid cell covers an equal-area
rectangle of the (H, W) image. ``area_matrix`` averages exactly over those rectangles (fractional overlaps
included); ``bilinear_matrix`` upsamples like ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``. Both return (dst, src) matrices applied along one axis with :func:`resample`.
"""

from __future__ import annotations

import numpy as np


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights: row i averages the source cells overlapping [i, i+1) * src/dst."""
    edges = np.arange(dst + 1) * (src / dst)
    left, right = edges[:-1, None], edges[1:, None]
    cells = np.arange(src)[None, :]
    overlap = np.clip(np.minimum(right, cells + 1) - np.maximum(left, cells), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) linear interpolation weights with half-pixel centres (align_corners=False)."""
    coords = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0, src - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, src - 1)
    frac = coords - low
    weights = np.zeros((dst, src))
    np.add.at(weights, (np.arange(dst), low), 1.0 - frac)
    np.add.at(weights, (np.arange(dst), high), frac)
    return weights


def resample(x: np.ndarray, size: tuple[int, int], axes: tuple[int, int], method: str = "area") -> np.ndarray:
    """Resample the two spatial ``axes`` of ``x`` to ``size`` (rows, cols) with ``method`` area|bilinear."""
    make = {"area": area_matrix, "bilinear": bilinear_matrix}[method]
    out = np.asarray(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)
    for axis, length in zip(axes, size):
        if out.shape[axis] != length:
            weights = make(out.shape[axis], length).astype(out.dtype)
            out = np.moveaxis(np.tensordot(weights, np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return out
