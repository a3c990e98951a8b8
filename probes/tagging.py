"""Clip-level linear tagging probe: which classes appear in a clip.

Features are averaged over every feature frame and grid cell of the clip; one logistic regression per
class (on standardised features) gives the probability that the class appears. Labels are those of the
views the features stand for (the source's ``frame_index`` frames), as in the paper: a class is positive
when its pixel count summed over those frames reaches ``min_pixels`` and it is present in at least
``min_frames`` of them (the thresholds of science.md, as parameters).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clipstore import ClipStore
from probes.metrics import tagging_metrics
from probes.result import ProbeResult
from probes.sources import FeatureSource

REQUIRED_ARRAYS = ("tag_counts",)
DEFAULTS: dict[str, Any] = {"C": 1.0, "max_iter": 2000}


def tag_labels(tag_counts: np.ndarray, min_pixels: int, min_frames: int) -> np.ndarray:
    """(clips, C) 0/1 labels from (clips, T, C) per-frame class pixel counts."""
    pixels = tag_counts.sum(axis=1)
    frames_present = (tag_counts > 0).sum(axis=1)
    return ((pixels >= min_pixels) & (frames_present >= min_frames)).astype(np.int8)


def _fit_class(x: np.ndarray, y: np.ndarray, settings: dict[str, Any]) -> Any:
    if y.min() == y.max():
        return None  # one label only in training: the probe can only predict the training rate
    model = make_pipeline(StandardScaler(), LogisticRegression(C=settings["C"], max_iter=settings["max_iter"]))
    return model.fit(x, y)


def run(source: FeatureSource, clips_store: ClipStore, train: np.ndarray, val: np.ndarray,
        settings: dict[str, Any], seed: int, *, min_pixels: int, min_frames: int) -> ProbeResult:
    """Fit one classifier per class on ``train`` clips, score ``val`` clips with tagging_metrics."""
    views = source.frame_index
    y_train = tag_labels(clips_store.select("tag_counts", train, views), min_pixels, min_frames)
    y_val = tag_labels(clips_store.select("tag_counts", val, views), min_pixels, min_frames)
    x_train, x_val = source.pooled(train), source.pooled(val)
    scores = np.empty(y_val.shape, dtype=np.float64)
    coef = np.zeros((y_train.shape[1], source.channels))
    for c in range(y_train.shape[1]):
        model = _fit_class(x_train, y_train[:, c], settings)
        if model is None:
            scores[:, c] = y_train[:, c].mean()
            continue
        scores[:, c] = model.predict_proba(x_val)[:, 1]
        coef[c] = model[-1].coef_[0] / model[0].scale_
    metrics = tagging_metrics(y_val, scores, train_pos_rate=y_train.mean(axis=0))
    return ProbeResult(
        metrics=metrics,
        info={"train_clips": len(train), "val_clips": len(val),
              "val_positive_rate": y_val.mean(axis=0).round(3).tolist()},
        predictions={"clip_index": val, "scores": scores.astype(np.float32), "labels": y_val},
        weights={"coef_raw_features": coef},
    )
