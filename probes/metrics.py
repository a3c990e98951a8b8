"""Evaluation metrics for the probing tasks (numpy + scikit-learn only, no torch).

Every metric is returned as a plain ``float`` fraction (``[0, 1]`` for the
tagging scores and ``delta1``; ``AbsRel`` is a non-negative ratio), never as a
percentage.

Multi-label tagging -- :func:`tagging_metrics`
    ``y_true`` (N, C) binary labels, ``y_score`` (N, C) probabilities in [0, 1].

    * **AP** (per class): rank samples by score, descending;
      ``precision_k = TP_k / k``, ``recall_k = TP_k / N_pos`` and
      ``AP = sum_k precision_k * (recall_k - recall_{k-1})`` -- the step
      (non-interpolated) convention of
      :func:`sklearn.metrics.average_precision_score`, which computes it.
      Tied scores form a single operating point (scikit-learn's convention),
      so AP does not depend on the order of tied samples; for distinct scores
      this is identical to the stable-sort definition above. A class with no
      positive in ``y_true`` has undefined AP and is skipped everywhere.
    * **mAP**: mean AP over classes with at least one positive.
    * **AP_head / AP_mid / AP_tail**: classes are sorted by the *training*
      split's per-class positive rate, descending, ties kept in class-index
      order (stable sort); head = first ``floor(C/3)`` classes, mid = next
      ``floor(C/3)``, tail = the remaining ``C - 2*floor(C/3)`` (C=20 -> 6/6/8).
      Each bucket score is the mean AP of its classes that have positives in
      ``y_true``; it is **NaN** when the bucket has no such class (always the
      case for head and mid when C < 3). See :func:`frequency_buckets`.
    * **OF1**: overall (micro) F1 with predictions ``y_score >= 0.5``
      (inclusive), pooling TP/FP/FN over all classes and samples.
    * **CF1**: per-class F1 at ``y_score >= 0.5``, averaged over the classes
      with at least one positive.

Depth, per sample -- :func:`depth_metrics`
    One sample = a set of views (arrays of any equal shape, e.g. (S, H, W)).
    The valid set ``m`` is ``mask & isfinite(gt) & (gt > 0) & isfinite(pred)``.
    The prediction is median-scaled per sample,
    ``pred_s = pred * median(gt[m]) / median(pred[m])``, then over ``m``:

    * **AbsRel** = ``mean(|pred_s - gt| / gt)``;
    * **delta1** = fraction of pixels with ``max(pred_s/gt, gt/pred_s) < 1.25``
      (a pixel with ``pred_s <= 0`` never counts as within the threshold).

    Dataset-level depth numbers are the mean of these per-sample values.

Planned (later issues, not implemented here): ``instance_metrics``,
``pointmap_error`` and ``pose_metrics`` will be added to this module and should
follow the same conventions (validated numpy inputs, ``dict[str, float]``
output, fractions rather than percentages).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score

__all__ = ["tagging_metrics", "depth_metrics", "frequency_buckets"]

#: Decision threshold for OF1 / CF1; a score equal to it counts as positive.
F1_THRESHOLD: float = 0.5
#: Threshold on ``max(pred/gt, gt/pred)`` for the delta1 accuracy (strict ``<``).
DELTA1_THRESHOLD: float = 1.25


# --------------------------------------------------------------------------- #
# Tagging
# --------------------------------------------------------------------------- #
def frequency_buckets(
    pos_rate: ArrayLike,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Split class indices into head / mid / tail buckets by positive rate.

    Classes are sorted by ``pos_rate`` descending with a stable sort (ties keep
    ascending class-index order). With ``k = floor(C / 3)``, head is the first
    ``k`` classes, mid the next ``k`` and tail the remaining ``C - 2k``.

    Args:
        pos_rate: (C,) per-class positive rate (normally from the training split).

    Returns:
        ``(head, mid, tail)`` arrays of class indices, each in sorted-rate order.

    Raises:
        ValueError: if ``pos_rate`` is not 1-D or contains non-finite values.
    """
    rate = np.asarray(pos_rate, dtype=np.float64)
    if rate.ndim != 1:
        raise ValueError(f"pos_rate must be 1-D of shape (C,), got shape {rate.shape}")
    if not np.all(np.isfinite(rate)):
        raise ValueError("pos_rate must contain only finite values")
    order = np.argsort(-rate, kind="stable")
    k = rate.shape[0] // 3
    return order[:k], order[k : 2 * k], order[2 * k :]


def _validate_tagging(
    y_true: ArrayLike, y_score: ArrayLike, train_pos_rate: ArrayLike | None
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64] | None]:
    yt = np.asarray(y_true)
    ys = np.asarray(y_score)
    if yt.ndim != 2:
        raise ValueError(f"y_true must be 2-D of shape (N, C), got shape {yt.shape}")
    if ys.ndim != 2:
        raise ValueError(f"y_score must be 2-D of shape (N, C), got shape {ys.shape}")
    if yt.shape != ys.shape:
        raise ValueError(
            f"y_true and y_score must have the same shape, got y_true {yt.shape} "
            f"and y_score {ys.shape}"
        )
    if not (np.issubdtype(yt.dtype, np.number) or yt.dtype == np.bool_):
        raise ValueError(f"y_true must be numeric or boolean, got dtype {yt.dtype}")
    if not (np.issubdtype(ys.dtype, np.number) or ys.dtype == np.bool_):
        raise ValueError(f"y_score must be numeric, got dtype {ys.dtype}")
    ys = ys.astype(np.float64)
    if not np.all(np.isfinite(ys)):
        bad = ys[~np.isfinite(ys)][0]
        raise ValueError(f"y_score must be finite, found {bad}")
    if ys.size and (ys.min() < 0.0 or ys.max() > 1.0):
        raise ValueError(
            f"y_score must be probabilities in [0, 1], found range "
            f"[{ys.min()}, {ys.max()}]"
        )
    bad_labels = ~np.isin(yt, (0, 1))
    if np.any(bad_labels):
        raise ValueError(f"y_true must contain only 0/1 labels, found {yt[bad_labels][0]!r}")
    yt = yt.astype(np.int64)

    rate: NDArray[np.float64] | None = None
    if train_pos_rate is not None:
        rate = np.asarray(train_pos_rate, dtype=np.float64)
        if rate.ndim != 1 or rate.shape[0] != yt.shape[1]:
            raise ValueError(
                f"train_pos_rate must have shape ({yt.shape[1]},) to match C, "
                f"got shape {rate.shape}"
            )
        if not np.all(np.isfinite(rate)):
            raise ValueError("train_pos_rate must contain only finite values")
    return yt, ys, rate


def tagging_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    train_pos_rate: ArrayLike | None = None,
) -> dict[str, float]:
    """Multi-label tagging metrics: mAP, head/mid/tail AP, OF1 and CF1.

    See the module docstring for the exact definitions.

    Args:
        y_true: (N, C) binary labels (0/1 or bool).
        y_score: (N, C) predicted probabilities in [0, 1].
        train_pos_rate: (C,) per-class positive rate of the *training* split,
            used only for the head/mid/tail buckets. ``None`` falls back to the
            positive rate of ``y_true``.

    Returns:
        ``{"mAP", "AP_head", "AP_mid", "AP_tail", "OF1", "CF1"}`` as floats in
        [0, 1]. A bucket AP is ``nan`` when none of its classes has a positive
        in ``y_true`` (head and mid are always ``nan`` when C < 3).

    Raises:
        ValueError: on non-2-D or mismatched shapes, non-finite or out-of-range
            scores, labels outside {0, 1}, a ``train_pos_rate`` whose shape is
            not (C,), or when no class has a positive.
    """
    yt, ys, rate = _validate_tagging(y_true, y_score, train_pos_rate)
    n_classes = yt.shape[1]
    has_pos = yt.sum(axis=0) > 0
    if not np.any(has_pos):
        raise ValueError(
            f"y_true has no positive label in any class (shape {yt.shape}); "
            "AP is undefined"
        )

    ap = np.full(n_classes, np.nan)
    for c in np.flatnonzero(has_pos):
        ap[c] = average_precision_score(yt[:, c], ys[:, c])

    if rate is None:
        rate = yt.mean(axis=0)
    head, mid, tail = frequency_buckets(rate)

    def _bucket_mean(idx: NDArray[np.intp]) -> float:
        vals = ap[idx][has_pos[idx]]
        return float(vals.mean()) if vals.size else math.nan

    # F1 at score >= 0.5 (inclusive), from TP/FP/FN counts: F1 = 2TP / (2TP + FP + FN).
    # This is exactly sklearn's f1_score(average="micro") and per-class
    # f1_score(average=None) on multi-label indicators (checked in the tests),
    # but computed directly so that C == 1 is not reinterpreted by sklearn as a
    # binary/multiclass column vector (where "micro" F1 would become accuracy).
    y_pred = ys >= F1_THRESHOLD
    pos = yt == 1
    tp = np.sum(y_pred & pos, axis=0)
    fp = np.sum(y_pred & ~pos, axis=0)
    fn = np.sum(~y_pred & pos, axis=0)
    # Micro F1 pools the counts over all (sample, class) cells; the denominator
    # is > 0 because at least one positive exists.
    of1 = 2.0 * tp.sum() / (2.0 * tp.sum() + fp.sum() + fn.sum())
    # Per-class F1 over classes with positives (denominator >= FN + TP > 0).
    tp_c, fp_c, fn_c = tp[has_pos], fp[has_pos], fn[has_pos]
    cf1 = np.mean(2.0 * tp_c / (2.0 * tp_c + fp_c + fn_c))

    return {
        "mAP": float(np.mean(ap[has_pos])),
        "AP_head": _bucket_mean(head),
        "AP_mid": _bucket_mean(mid),
        "AP_tail": _bucket_mean(tail),
        "OF1": float(of1),
        "CF1": float(cf1),
    }


# --------------------------------------------------------------------------- #
# Depth
# --------------------------------------------------------------------------- #
def depth_metrics(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike) -> dict[str, float]:
    """Median-scaled depth metrics for one sample (a set of views).

    Valid pixels are ``mask & isfinite(gt) & (gt > 0) & isfinite(pred)``. The
    prediction is scaled by ``median(gt[m]) / median(pred[m])``; then
    ``AbsRel = mean(|pred_s - gt| / gt)`` and ``delta1`` is the fraction of
    valid pixels with ``max(pred_s / gt, gt / pred_s) < 1.25`` (pixels with
    ``pred_s <= 0`` count as failures). Values outside the valid set are never
    read, so they may hold anything (NaN, inf, negatives).

    Args:
        pred: predicted depth, any shape (e.g. (S, H, W)).
        gt: ground-truth depth, same shape as ``pred``.
        mask: boolean validity mask, same shape as ``pred`` (a numeric array
            holding only 0/1 is accepted and cast to bool).

    Returns:
        ``{"AbsRel": float, "delta1": float}``.

    Raises:
        ValueError: on shape mismatch, a non-boolean mask, an empty effective
            mask, or ``median(pred[m]) <= 0``.
    """
    p = np.asarray(pred)
    g = np.asarray(gt)
    mk = np.asarray(mask)
    if g.shape != p.shape:
        raise ValueError(f"gt shape {g.shape} does not match pred shape {p.shape}")
    if mk.shape != p.shape:
        raise ValueError(f"mask shape {mk.shape} does not match pred shape {p.shape}")
    for name, arr in (("pred", p), ("gt", g)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if mk.dtype != np.bool_:
        if not np.issubdtype(mk.dtype, np.number) or np.any(~np.isin(mk, (0, 1))):
            raise ValueError(f"mask must be boolean (or 0/1), got dtype {mk.dtype}")
        mk = mk.astype(bool)

    p = p.astype(np.float64)
    g = g.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = mk & np.isfinite(g) & (g > 0) & np.isfinite(p)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError(
            f"mask selects no valid pixel (mask has {int(mk.sum())} True entries, "
            "none with finite gt > 0 and finite pred)"
        )
    pv = p[valid]
    gv = g[valid]
    med_pred = float(np.median(pv))
    if med_pred <= 0:
        raise ValueError(
            f"median(pred[mask]) must be > 0 for median scaling, got {med_pred}"
        )
    ps = pv * (float(np.median(gv)) / med_pred)

    abs_rel = float(np.mean(np.abs(ps - gv) / gv))
    pos = ps > 0
    ratio = np.full(ps.shape, np.inf)
    ratio[pos] = np.maximum(ps[pos] / gv[pos], gv[pos] / ps[pos])
    delta1 = float(np.mean(ratio < DELTA1_THRESHOLD))
    return {"AbsRel": abs_rel, "delta1": delta1}
