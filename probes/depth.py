"""Per-token linear depth probe.

Targets are the log of the area-averaged ground-truth depth in each feature-grid cell (log makes the
ridge fit scale-balanced across near and far surfaces). Predictions are upsampled bilinearly to full
resolution and scored per view with :func:`probes.metrics.depth_metrics` (median scaling) on the
reliability mask: valid depth with confidence at or above its 75th percentile in the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clipstore import ClipStore
from clipstore.grid import resample
from probes.metrics import depth_metrics
from probes.result import ProbeResult
from probes.sources import FeatureSource

REQUIRED_ARRAYS = ("depth", "confidence")
DEFAULTS: dict[str, Any] = {"alphas": [0.1, 1.0, 10.0, 100.0, 1000.0], "max_train_tokens": 200_000}


def log_depth_targets(depth: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(views, h, w) log of the mean valid depth per cell, and whether the cell had any valid pixel."""
    valid = np.isfinite(depth) & (depth > 0)
    total = resample(np.where(valid, depth, 0.0), grid, axes=(1, 2))
    share = resample(valid.astype(np.float32), grid, axes=(1, 2))
    has_depth = share > 0.5
    return np.log(np.where(has_depth, total / np.maximum(share, 1e-6), 1.0)), has_depth


def reliability_mask(depth: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Valid pixels whose confidence is in the sample's top quarter (all of them when it is constant)."""
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return valid
    return valid & (confidence >= np.percentile(confidence[valid], 75))


@dataclass
class DepthData:
    features: np.ndarray  # (clips, T', h, w, C)
    depth: np.ndarray  # (clips, T', H, W), at the clip frames of the feature frames
    confidence: np.ndarray


def load_split(source: FeatureSource, clips_store: ClipStore, clips: np.ndarray) -> DepthData:
    frames = source.frame_index
    depth = clips_store.select("depth", clips, frames)
    confidence = clips_store.select("confidence", clips, frames)
    return DepthData(source.clips(clips), depth, confidence)


def _training_tokens(data: DepthData, max_tokens: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    grid = data.features.shape[2:4]
    views = data.depth.reshape(-1, *data.depth.shape[2:])
    targets, has_depth = log_depth_targets(views, grid)
    x = data.features.reshape(-1, data.features.shape[-1])[has_depth.ravel()]
    y = targets.ravel()[has_depth.ravel()]
    if len(y) > max_tokens:
        keep = np.random.default_rng(seed).choice(len(y), size=max_tokens, replace=False)
        x, y = x[keep], y[keep]
    return x, y


def run(source: FeatureSource, clips_store: ClipStore, train: np.ndarray, val: np.ndarray,
        settings: dict[str, Any], seed: int) -> ProbeResult:
    """Fit on ``train`` clips and score on ``val`` clips."""
    train_data = load_split(source, clips_store, train)
    x, y = _training_tokens(train_data, settings["max_train_tokens"], seed)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=settings["alphas"]))
    model.fit(x, y)
    val_data = load_split(source, clips_store, val)
    grid_shape = val_data.features.shape[:4]
    log_pred = model.predict(val_data.features.reshape(-1, source.channels)).reshape(grid_shape)
    full_size = val_data.depth.shape[2:]
    scores = []
    for pred_cells, gt, conf in zip(np.exp(log_pred).reshape(-1, *grid_shape[2:]),
                                    val_data.depth.reshape(-1, *full_size),
                                    val_data.confidence.reshape(-1, *full_size), strict=True):
        pred = resample(pred_cells[None], full_size, axes=(1, 2), method="bilinear")[0]
        scores.append(depth_metrics(pred, gt, reliability_mask(gt, conf)))
    metrics = {key: float(np.mean([s[key] for s in scores])) for key in ("AbsRel", "delta1")}
    scaler, ridge = model[0], model[-1]
    return ProbeResult(
        metrics=metrics,
        info={"train_tokens": int(len(y)), "val_views": len(scores), "alpha": float(ridge.alpha_)},
        predictions={"clip_index": val, "frame_index": source.frame_index,
                     "depth_grid": np.exp(log_pred).astype(np.float16)},
        weights={"scaler_mean": scaler.mean_, "scaler_scale": scaler.scale_, "coef": ridge.coef_,
                 "intercept": np.asarray(ridge.intercept_)},
    )
