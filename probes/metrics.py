"""Evaluation metrics for the probing tasks (numpy, scipy and scikit-learn; no torch).

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

Reliability mask, per sample -- :func:`reliability_mask`
    Pixels whose ground-truth confidence is ``>=`` its 75th percentile
    (:func:`numpy.percentile`, linear interpolation) over the sample's valid
    pixels -- the "top 25 %" mask on which depth and point-map metrics are fit.

Instance grouping, per scene -- :func:`instance_metrics`
    ``T-mIoU`` and ``T-SR`` of HDBSCAN cluster labels against view-consistent
    ground-truth instance ids (exact definition in the function docstring).
    Dataset-level numbers are the unweighted mean over scenes with at least
    one instance (the function returns NaN for a scene without one).

Point maps, per sample -- :func:`pointmap_error`
    Confidence-weighted mean Euclidean distance after a similarity
    (:func:`umeyama_similarity`) fitted from prediction to ground truth on the
    reliability mask and applied to every pixel.

Camera poses, per sample -- :func:`pose_metrics`
    ``AUC@30``, ``RRA@30`` and ``RTA@30`` over all view pairs ``i < j`` in
    the VGGT evaluation convention (relative poses ``inv(E_i) @ E_j`` of the
    world-to-camera matrices). :func:`pose_errors` returns the per-pair errors
    so that pairs can be pooled over samples before :func:`pose_auc`.
    :func:`pose_auc_reference31` is the reference code's 31-bin variant (the
    number in the paper's table); it must never be reported as AUC@30.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.spatial.transform import Rotation

__all__ = [
    "depth_metrics",
    "frequency_buckets",
    "instance_metrics",
    "pointmap_error",
    "pose_auc",
    "pose_auc_from_histogram",
    "pose_auc_reference31",
    "pose_error_histogram",
    "pose_errors",
    "pose_metrics",
    "reliability_mask",
    "tagging_metrics",
    "umeyama_similarity",
]

#: Decision threshold for OF1 / CF1; a score equal to it counts as positive.
F1_THRESHOLD: float = 0.5
#: Threshold on ``max(pred/gt, gt/pred)`` for the delta1 accuracy (strict ``<``).
DELTA1_THRESHOLD: float = 1.25
#: Per-view IoU an instance must reach (inclusive) in every visible view for T-SR.
TSR_IOU_THRESHOLD: float = 0.5
#: Percentile of the ground-truth confidence above which a pixel is "reliable".
RELIABILITY_PERCENTILE: float = 75.0
#: Pose threshold in degrees for AUC@30 / RRA@30 / RTA@30.
POSE_THRESHOLD_DEG: int = 30
#: A relative translation shorter than this has no direction; its angle error is 90 degrees.
MIN_TRANSLATION_NORM: float = 1e-12


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
    from sklearn.metrics import average_precision_score

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


# --------------------------------------------------------------------------- #
# Shared validation
# --------------------------------------------------------------------------- #
def _as_bool_mask(mask: ArrayLike, name: str) -> NDArray[np.bool_]:
    mk = np.asarray(mask)
    if mk.dtype == np.bool_:
        return mk
    if not np.issubdtype(mk.dtype, np.number) or np.any(~np.isin(mk, (0, 1))):
        raise ValueError(f"{name} must be boolean (or 0/1), got dtype {mk.dtype}")
    return mk.astype(bool)


def _as_float(arr: ArrayLike, name: str) -> NDArray[np.float64]:
    a = np.asarray(arr)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    return a.astype(np.float64)


# --------------------------------------------------------------------------- #
# Similarity alignment
# --------------------------------------------------------------------------- #
def umeyama_similarity(
    src: ArrayLike, dst: ArrayLike, weights: ArrayLike | None = None
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama 1991).

    Minimises ``sum_i w_i * ||s * R @ src_i + t - dst_i||^2`` over ``s > 0``,
    ``R`` in SO(3) and ``t``. With weighted means ``mu_x``, ``mu_y``,
    centred points ``x_i``, ``y_i``, ``var_x = sum w_i ||x_i||^2 / sum w_i``,
    the cross-covariance ``Sigma = sum w_i y_i x_i^T / sum w_i = U D V^T`` and
    ``K = diag(1, 1, det(U) det(V))`` (the reflection correction):
    ``R = U K V^T``, ``s = trace(D K) / var_x``, ``t = mu_y - s R mu_x``.

    Args:
        src: (N, 3) source points.
        dst: (N, 3) target points.
        weights: optional (N,) non-negative weights (default: all 1).

    Returns:
        ``(s, R, t)``: scale (float), (3, 3) rotation with det +1, (3,) translation.

    Raises:
        ValueError: on shapes other than (N, 3), mismatched N, non-finite values,
            fewer than 3 points (with positive weight), negative weights or a
            source with zero variance.
    """
    x = _as_float(src, "src")
    y = _as_float(dst, "dst")
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"src must have shape (N, 3), got shape {x.shape}")
    if y.shape != x.shape:
        raise ValueError(f"dst shape {y.shape} does not match src shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("src and dst must contain only finite values")
    w = np.ones(x.shape[0]) if weights is None else _as_float(weights, "weights")
    if w.shape != (x.shape[0],):
        raise ValueError(f"weights must have shape ({x.shape[0]},), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    n_used = int(np.count_nonzero(w))
    if n_used < 3:
        raise ValueError(f"umeyama_similarity needs >= 3 points with positive weight, got {n_used}")

    w = w / w.sum()
    mu_x = w @ x
    mu_y = w @ y
    xc = x - mu_x
    yc = y - mu_y
    var_x = float(w @ np.sum(xc * xc, axis=1))
    # Relative to the coordinates' magnitude: centring a constant cloud leaves
    # rounding noise, not a real spread.
    magnitude = max(1.0, float(np.max(np.abs(x))))
    if var_x <= (1e3 * np.finfo(np.float64).eps * magnitude) ** 2:
        raise ValueError(f"src has (near) zero variance ({var_x:.3g}); the similarity is undefined")

    sigma = (yc * w[:, None]).T @ xc
    u, d, vt = np.linalg.svd(sigma)
    k = np.ones(3)
    k[2] = -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0
    rot = (u * k) @ vt
    scale = float(np.dot(d, k) / var_x)
    trans = mu_y - scale * rot @ mu_x
    return scale, rot, trans


# --------------------------------------------------------------------------- #
# Instance grouping
# --------------------------------------------------------------------------- #
def _aggregate_masks(
    view_pos: NDArray[np.intp], index: NDArray[np.intp], n_pos: int, n_labels: int
) -> sparse.csr_matrix:
    """(n_pos, n_labels) 0/1 matrix: label present at a pixel position in any view."""
    ones = np.ones(index.shape[0], dtype=np.int64)
    # Row-major by position: each row holds <= S entries, so the duplicate merge is cheap.
    agg = sparse.csr_matrix((ones, (view_pos, index)), shape=(n_pos, n_labels))
    agg.data[:] = 1  # duplicates (same position, several views) were summed: OR them
    return agg


def instance_metrics(pred_labels: ArrayLike, gt_ids: ArrayLike) -> dict[str, float]:
    """T-mIoU and T-SR of one scene's cluster labels against GT instance ids.

    Valid pixels are those with ``gt_ids != 0`` (0 = void); every count below
    is restricted to them, so prediction labels on void pixels are never read.
    Prediction label -1 is noise and never a cluster; labels >= 0 are clusters.

    For each GT instance ``g`` (each non-zero id):

    1. Aggregate masks are ORs over views at each pixel position (H, W):
       ``A_g = any_s(gt_s == g)`` and ``A_p = any_s(valid_s & pred_s == p)``.
       ``p* = argmax_p |A_g & A_p| / |A_g | A_p|``; a cluster may be ``p*``
       of several instances; ties go to the smallest cluster label. If ``A_g``
       overlaps no cluster, all of g's IoUs are 0.
    2. In each view ``s`` where ``g`` is visible (>= 1 pixel):
       ``IoU_s = |g_s & p*_s| / |g_s | p*_s|`` over valid pixels of view s.

    ``T-mIoU`` = mean over instances of (mean ``IoU_s`` over g's visible views);
    ``T-SR`` = fraction of instances with ``IoU_s >= 0.5`` in every visible view.

    Args:
        pred_labels: (S, H, W) integer cluster labels, -1 = noise.
        gt_ids: (S, H, W) non-negative integer instance ids, consistent across
            views, 0 = void.

    Returns:
        ``{"T-mIoU": float, "T-SR": float}`` in [0, 1]; both NaN when the scene
        has no instance (no non-zero id).

    Raises:
        ValueError: on non-integer inputs, shapes other than (S, H, W),
            mismatched shapes, prediction labels below -1 or negative GT ids.
    """
    pred = np.asarray(pred_labels)
    gt = np.asarray(gt_ids)
    for name, arr in (("pred_labels", pred), ("gt_ids", gt)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        if arr.ndim != 3:
            raise ValueError(f"{name} must have shape (S, H, W), got shape {arr.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_labels shape {pred.shape} does not match gt_ids shape {gt.shape}")
    if pred.size and pred.min() < -1:
        raise ValueError(f"pred_labels must be >= -1 (-1 = noise), found {pred.min()}")
    if gt.size and gt.min() < 0:
        raise ValueError(f"gt_ids must be >= 0 (0 = void), found {gt.min()}")

    n_views = gt.shape[0]
    n_pos = gt.shape[1] * gt.shape[2]
    valid = gt != 0
    view, pos = np.divmod(np.flatnonzero(valid), n_pos)
    instances, g_idx = np.unique(gt[valid], return_inverse=True)
    n_g = instances.size
    if n_g == 0:
        return {"T-mIoU": math.nan, "T-SR": math.nan}
    pv = pred[valid]
    clusters, p_idx = np.unique(pv, return_inverse=True)
    # Shift so that cluster indices start at 0 and noise (if present) is -1.
    n_noise_labels = int(clusters.size > 0 and clusters[0] == -1)
    p_idx = p_idx - n_noise_labels
    n_p = clusters.size - n_noise_labels
    in_cluster = p_idx >= 0

    # 1. Matching on cross-view aggregate masks.
    agg_g = _aggregate_masks(pos, g_idx, n_pos, n_g)
    agg_p = _aggregate_masks(pos[in_cluster], p_idx[in_cluster], n_pos, n_p)
    inter_agg = (agg_g.T @ agg_p).toarray()
    union_agg = agg_g.getnnz(axis=0)[:, None] + agg_p.getnnz(axis=0)[None, :] - inter_agg
    iou_agg = inter_agg / np.maximum(union_agg, 1)
    # argmax takes the first maximum = the smallest cluster label (clusters are sorted).
    best = np.argmax(iou_agg, axis=1) if n_p else np.zeros(n_g, dtype=np.intp)
    matched = inter_agg[np.arange(n_g), best] > 0 if n_p else np.zeros(n_g, dtype=bool)

    # 2. Per-view IoUs with the matched cluster, as (S, n_g) tables.
    hit = in_cluster & matched[g_idx] & (p_idx == best[g_idx])
    g_cell = view * n_g + g_idx
    size_g = np.bincount(g_cell, minlength=n_views * n_g).reshape(n_views, n_g)
    inter = np.bincount(g_cell, weights=hit, minlength=n_views * n_g).reshape(n_views, n_g)
    size_p = np.bincount(
        view[in_cluster] * max(n_p, 1) + p_idx[in_cluster], minlength=n_views * max(n_p, 1)
    ).reshape(n_views, max(n_p, 1))
    size_best = size_p[:, best] * matched[None, :]
    visible = size_g > 0
    iou = np.where(visible, inter / np.maximum(size_g + size_best - inter, 1), 0.0)

    n_visible = visible.sum(axis=0)  # >= 1 for every instance by construction
    t_miou = float(np.mean(iou.sum(axis=0) / n_visible))
    success = np.all((iou >= TSR_IOU_THRESHOLD) | ~visible, axis=0)
    return {"T-mIoU": t_miou, "T-SR": float(np.mean(success))}


# --------------------------------------------------------------------------- #
# Point maps
# --------------------------------------------------------------------------- #
def reliability_mask(confidence: ArrayLike, valid: ArrayLike | None = None) -> NDArray[np.bool_]:
    """Pixels whose confidence is in the sample's top quarter.

    ``m = valid & (confidence >= np.percentile(confidence[valid], 75))`` with
    numpy's default linear interpolation; ``valid`` is always intersected with
    ``isfinite(confidence)``. Ties at the threshold are all kept, so ``m`` can
    hold more than 25 % of the valid pixels, and all of them when the
    confidence is constant.

    Args:
        confidence: ground-truth confidence of one sample, any shape (e.g. (S, H, W)).
        valid: optional boolean mask of the same shape (default: finite confidence).

    Returns:
        Boolean mask of ``confidence``'s shape.

    Raises:
        ValueError: on a non-numeric confidence, a mask of another shape or
            non-boolean dtype, or when no pixel is valid.
    """
    conf = _as_float(confidence, "confidence")
    ok = np.isfinite(conf)
    if valid is not None:
        vm = _as_bool_mask(valid, "valid")
        if vm.shape != conf.shape:
            raise ValueError(f"valid shape {vm.shape} does not match confidence shape {conf.shape}")
        ok &= vm
    if not ok.any():
        raise ValueError(f"no valid pixel with finite confidence (confidence shape {conf.shape})")
    return ok & (conf >= np.percentile(conf[ok], RELIABILITY_PERCENTILE))


def pointmap_error(pred: ArrayLike, gt: ArrayLike, conf: ArrayLike, mask: ArrayLike) -> float:
    """Confidence-weighted point-map error after a similarity alignment.

    A similarity ``(s, R, t)`` is fitted (:func:`umeyama_similarity`,
    unweighted) from ``pred`` to ``gt`` on the pixels of ``mask`` whose
    ``pred`` and ``gt`` are finite, then applied to every pixel. Over all
    pixels with finite ``pred`` and ``gt`` (inside and outside the mask)::

        error = sum c * ||s R pred + t - gt||_2 / sum c

    Args:
        pred: (S, H, W, 3) predicted points.
        gt: (S, H, W, 3) ground-truth points.
        conf: (S, H, W) non-negative weights (the ground-truth confidence).
        mask: (S, H, W) boolean fit mask (normally :func:`reliability_mask`).

    Returns:
        The weighted mean distance, in ground-truth units.

    Raises:
        ValueError: on shape mismatch, a non-boolean mask, a fit mask with fewer
            than 3 usable pixels (or a degenerate one, see
            :func:`umeyama_similarity`), negative or non-finite ``conf`` on an
            evaluated pixel, or a zero total weight.
    """
    p = _as_float(pred, "pred")
    g = _as_float(gt, "gt")
    c = _as_float(conf, "conf")
    if p.ndim != 4 or p.shape[-1] != 3:
        raise ValueError(f"pred must have shape (S, H, W, 3), got shape {p.shape}")
    if g.shape != p.shape:
        raise ValueError(f"gt shape {g.shape} does not match pred shape {p.shape}")
    if c.shape != p.shape[:-1]:
        raise ValueError(f"conf shape {c.shape} does not match pred's (S, H, W) {p.shape[:-1]}")
    mk = _as_bool_mask(mask, "mask")
    if mk.shape != p.shape[:-1]:
        raise ValueError(f"mask shape {mk.shape} does not match pred's (S, H, W) {p.shape[:-1]}")

    finite = np.all(np.isfinite(p), axis=-1) & np.all(np.isfinite(g), axis=-1)
    fit = mk & finite
    if np.count_nonzero(fit) < 3:
        raise ValueError(
            f"mask selects {int(np.count_nonzero(fit))} pixels with finite pred and gt "
            f"(mask has {int(mk.sum())} True entries); the similarity fit needs >= 3"
        )
    s, rot, t = umeyama_similarity(p[fit], g[fit])

    cv = c[finite]
    if not np.all(np.isfinite(cv)) or np.any(cv < 0):
        raise ValueError("conf must be finite and non-negative on pixels with finite pred and gt")
    total = cv.sum()
    if total <= 0:
        raise ValueError("conf sums to 0 over the pixels with finite pred and gt")
    aligned = s * p[finite] @ rot.T + t
    dist = np.linalg.norm(aligned - g[finite], axis=-1)
    return float(np.sum(cv * dist) / total)


# --------------------------------------------------------------------------- #
# Camera poses
# --------------------------------------------------------------------------- #
def _as_extrinsics(extrinsics: ArrayLike, name: str) -> NDArray[np.float64]:
    """(S, 4, 4) homogeneous world-to-camera matrices from (S, 3, 4) or (S, 4, 4)."""
    e = _as_float(extrinsics, name)
    if e.ndim != 3 or e.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"{name} must have shape (S, 3, 4) or (S, 4, 4), got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{name} must contain only finite values")
    if e.shape[1] == 4:
        if not np.allclose(e[:, 3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError(f"{name} (S, 4, 4) must have last row [0, 0, 0, 1], got {e[:, 3].tolist()}")
        return e
    bottom = np.broadcast_to([0.0, 0.0, 0.0, 1.0], (e.shape[0], 1, 4))
    return np.concatenate([e, bottom], axis=1)


def _rotation_angle_deg(rot_a: NDArray[np.float64], rot_b: NDArray[np.float64]) -> NDArray[np.float64]:
    # VGGT's formula on unit quaternions: the sign ambiguity q ~ -q cancels in <q, q_hat>^2.
    qa = Rotation.from_matrix(rot_a).as_quat()
    qb = Rotation.from_matrix(rot_b).as_quat()
    dot2 = np.sum(qa * qb, axis=-1) ** 2
    return np.degrees(np.arccos(np.clip(1.0 - 2.0 * (1.0 - dot2), -1.0, 1.0)))


def _translation_angle_deg(t_a: NDArray[np.float64], t_b: NDArray[np.float64]) -> NDArray[np.float64]:
    # atan2(|a x b|, a . b) is accurate near 0 and 180 degrees, unlike arccos of the cosine.
    theta = np.degrees(
        np.arctan2(np.linalg.norm(np.cross(t_a, t_b), axis=-1), np.sum(t_a * t_b, axis=-1))
    )
    err = np.minimum(theta, 180.0 - theta)
    degenerate = (np.linalg.norm(t_a, axis=-1) < MIN_TRANSLATION_NORM) | (
        np.linalg.norm(t_b, axis=-1) < MIN_TRANSLATION_NORM
    )
    return np.where(degenerate, 90.0, err)


def pose_errors(
    pred_extrinsics: ArrayLike, gt_extrinsics: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-pair relative rotation and translation errors, in degrees.

    For every pair ``i < j`` (order of ``np.triu_indices(S, 1)``), with
    ``E`` the 4x4 world-to-camera matrices, ``Rel_ij = inv(E_i) @ E_j``
    (VGGT's evaluation convention; exact matrix inverse) for the prediction
    and the ground truth.

    * Rotation error: ``arccos(1 - 2 (1 - <q, q_hat>^2))`` with ``q``,
      ``q_hat`` the unit quaternions of the two relative rotations (argument
      clipped to [-1, 1]) -- the geodesic angle between them, in [0, 180].
    * Translation error: the angle ``theta`` between the two relative
      translation vectors, folded for the sign ambiguity as
      ``min(theta, 180 - theta)``, in [0, 90]. If either vector is shorter
      than ``MIN_TRANSLATION_NORM`` it has no direction and the error is 90
      (what VGGT's ``t / (|t| + eps)`` yields).

    Only angles enter, so the prediction's global scale is irrelevant. The
    errors are unchanged by ``E -> W @ E`` (any common W: ``Rel`` itself is
    unchanged) and by a common world rotation ``E -> E @ W`` with ``W``
    a pure rotation, but *not* by a common world translation: ``Rel_ij`` is a
    conjugation by W, whose translation part mixes in ``(R_rel - I) t_W``.
    Express prediction and ground truth in the same world frame (e.g. view 0's).

    Args:
        pred_extrinsics: (S, 3, 4) or (S, 4, 4) predicted world-to-camera matrices.
        gt_extrinsics: same shape, ground truth.

    Returns:
        ``(rotation_errors, translation_errors)``, each of shape (S (S - 1) / 2,).

    Raises:
        ValueError: on bad or mismatched shapes, non-finite values, a (S, 4, 4)
            matrix whose last row is not [0, 0, 0, 1], or fewer than 2 views.
    """
    pred = _as_extrinsics(pred_extrinsics, "pred_extrinsics")
    gt = _as_extrinsics(gt_extrinsics, "gt_extrinsics")
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(
            f"pred_extrinsics has {pred.shape[0]} views but gt_extrinsics has {gt.shape[0]}"
        )
    if pred.shape[0] < 2:
        raise ValueError(f"pose errors need >= 2 views (S), got S={pred.shape[0]}")
    i, j = np.triu_indices(pred.shape[0], k=1)
    rel_pred = np.linalg.inv(pred[i]) @ pred[j]
    rel_gt = np.linalg.inv(gt[i]) @ gt[j]
    rot_err = _rotation_angle_deg(rel_pred[:, :3, :3], rel_gt[:, :3, :3])
    trans_err = _translation_angle_deg(rel_pred[:, :3, 3], rel_gt[:, :3, 3])
    return rot_err, trans_err


def _validate_errors(errors: ArrayLike) -> NDArray[np.float64]:
    e = _as_float(errors, "errors")
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"errors must be a non-empty 1-D array, got shape {e.shape}")
    if np.any(np.isnan(e)) or np.any(e < 0):
        raise ValueError("errors must be non-negative angles (no NaN)")
    return e


def pose_auc(errors: ArrayLike, max_threshold: int = POSE_THRESHOLD_DEG) -> float:
    """Standard pose AUC (PoseDiffusion / VGGT evaluations) up to ``max_threshold`` degrees.

    ``hist = np.histogram(e, bins=np.arange(max_threshold + 1))[0]`` -- the
    integer-degree bins ``[0, 1), ..., [T-1, T]`` (numpy closes the last one)
    -- divided by the number of ALL errors (larger errors only count in the
    denominator), cumulated, and averaged over the ``T`` bins. It is the mean
    over ``k = 1..T`` of the fraction of errors below ``k`` degrees (below or
    equal for ``k = T``).

    Args:
        errors: (N,) per-pair errors in degrees, normally
            ``max(rotation_error, translation_error)``, possibly pooled over samples.
        max_threshold: T, a positive integer number of degrees.

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: on an empty or non-1-D input, NaN or negative errors, or a
            non-positive or non-integer ``max_threshold``.
    """
    e = _validate_errors(errors)
    return float(pose_auc_from_histogram(pose_error_histogram(e, max_threshold), e.size))


def pose_error_histogram(errors: ArrayLike, max_threshold: int = POSE_THRESHOLD_DEG) -> NDArray[np.int64]:
    """(T,) counts of ``errors`` in the integer-degree bins of :func:`pose_auc`. Counts of disjoint sets of
    pairs add up, so pooled pairs (and bootstrap resamples of samples) need only each sample's histogram."""
    if int(max_threshold) != max_threshold or max_threshold < 1:
        raise ValueError(f"max_threshold must be a positive integer, got {max_threshold!r}")
    hist, _ = np.histogram(_validate_errors(errors), bins=np.arange(int(max_threshold) + 1))
    return hist.astype(np.int64)


def pose_auc_from_histogram(hist: ArrayLike, total: ArrayLike) -> NDArray[np.float64] | float:
    """:func:`pose_auc` from :func:`pose_error_histogram` counts (..., T) of ``total`` (...) errors in all;
    vectorised over leading axes."""
    hist = np.asarray(hist, dtype=np.float64)
    return np.mean(np.cumsum(hist / np.asarray(total, dtype=np.float64)[..., None], axis=-1), axis=-1)


def pose_auc_reference31(errors: ArrayLike) -> float:
    """The reference training code's AUC variant -- NOT the standard AUC@30.

    ``np.histogram(e, bins=31, range=(0, 30))`` (31 equal bins of width 30/31
    degrees), divided by the number of all errors, cumulated, and the mean of
    the first 30 cumulative values (the last bin is dropped). This is the
    number in the paper's table; report it only under its own name, never as
    AUC@30 (use :func:`pose_auc` for that).

    Args:
        errors: (N,) per-pair errors in degrees.

    Returns:
        The reference AUC in [0, 1].

    Raises:
        ValueError: on an empty or non-1-D input, NaN or negative errors.
    """
    e = _validate_errors(errors)
    hist, _ = np.histogram(e, bins=31, range=(0.0, 30.0))
    return float(np.mean(np.cumsum(hist / e.size)[:30]))


def pose_metrics(pred_extrinsics: ArrayLike, gt_extrinsics: ArrayLike) -> dict[str, float]:
    """AUC@30, RRA@30 and RTA@30 over all view pairs of one sample.

    Errors per pair come from :func:`pose_errors`; ``e = max(rotation,
    translation)``. ``RRA@30`` / ``RTA@30`` are the fractions of pairs with
    rotation / translation error strictly below 30 degrees; ``AUC@30`` is
    :func:`pose_auc` of ``e`` (whose last bin includes exactly 30 degrees).
    To pool pairs over samples, call :func:`pose_errors` and :func:`pose_auc`.

    Args:
        pred_extrinsics: (S, 3, 4) or (S, 4, 4) predicted world-to-camera matrices.
        gt_extrinsics: same shape, ground truth.

    Returns:
        ``{"AUC@30", "RRA@30", "RTA@30"}`` as floats in [0, 1].

    Raises:
        ValueError: see :func:`pose_errors`.
    """
    rot, trans = pose_errors(pred_extrinsics, gt_extrinsics)
    return {
        "AUC@30": pose_auc(np.maximum(rot, trans), POSE_THRESHOLD_DEG),
        "RRA@30": float(np.mean(rot < POSE_THRESHOLD_DEG)),
        "RTA@30": float(np.mean(trans < POSE_THRESHOLD_DEG)),
    }
