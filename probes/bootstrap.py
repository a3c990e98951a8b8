"""Bootstrap confidence intervals over validation clips (numpy; no torch).

A bootstrap resample draws ``n`` clip indices uniformly with replacement. It
is represented here by its *weights*, the (n,) count of how often each clip
was drawn (``np.bincount(idx, minlength=n)``). Every metric below is computed
for a whole (B, n) weight matrix at once, and equals the plain metric on the
explicitly resampled rows ``x[idx]``. 1000 resamples of the tagging metrics take
milliseconds for a dozen clips and about 0.1 s for 300 clips x 20 classes
(2 CPU cores), against about 20 s for a loop of ``tagging_metrics`` calls.

Typical use::

    w = resample_weights(n_clips, 1000, seed=0)
    maps = weighted_tagging_metrics(labels, scores, w, train_pos_rate)["mAP"]
    lo, hi = percentile_interval(maps)  # 95 % interval

Scoring several training seeds on the *same* weights and passing the (S, B)
stack to :func:`percentile_interval` gives an interval for the seed-averaged
score.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from probes.metrics import F1_THRESHOLD, frequency_buckets

__all__ = [
    "percentile_interval",
    "resample_weights",
    "weighted_average_precision",
    "weighted_nanmean",
    "weighted_tagging_metrics",
]

#: Keys returned by :func:`weighted_tagging_metrics`, as in ``tagging_metrics``.
TAGGING_KEYS: tuple[str, ...] = ("mAP", "AP_head", "AP_mid", "AP_tail", "OF1", "CF1")


def resample_weights(n: int, resamples: int, seed: int) -> NDArray[np.int64]:
    """Bootstrap counts: a (resamples, n) int64 matrix.

    Row ``b`` is ``np.bincount(idx[b], minlength=n)`` for
    ``idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))``,
    i.e. ``n`` clip indices drawn uniformly with replacement per row. Every row
    sums to ``n``.

    Raises:
        ValueError: if ``n < 1`` or ``resamples < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    # One bincount over offset indices instead of a Python loop over rows.
    flat = (idx + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.int64)


def _as_weights(weights: ArrayLike, n: int) -> NDArray[np.float64]:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must have shape (B, {n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    return w


def _cumsum_at(
    w: NDArray[np.float64], cols: NDArray[np.intp], at: NDArray[np.intp]
) -> NDArray[np.float64]:
    """``sum(w[:, cols[:k]], axis=1)`` for every ``k`` in ``at`` (k = 0 gives 0)."""
    cum = np.zeros((w.shape[0], cols.size + 1))
    np.cumsum(w[:, cols], axis=1, out=cum[:, 1:])
    return cum[:, at]


def _weighted_ap(
    y: NDArray[np.float64], s: NDArray[np.float64], w: NDArray[np.float64]
) -> NDArray[np.float64]:
    """AP of one binary column (n,) for every row of the validated weights (B, n)."""
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    pos_sorted = y[order] == 1
    # Last index of each group of tied scores: one operating point per distinct score.
    ends = np.append(np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1)
    # TP and FP as separate cumulative sums over the positive and the negative clips
    # only: scikit-learn's cumsum(y * w) adds just exact zeros besides these terms, so
    # the sums are the same, at half the work.
    n_pos_seen = np.cumsum(pos_sorted)[ends]
    tps = _cumsum_at(w, order[pos_sorted], n_pos_seen)
    fps = _cumsum_at(w, order[~pos_sorted], ends + 1 - n_pos_seen)
    n_pos = tps[:, -1:]
    ps = tps + fps
    # A leading group with only zero-weight clips has 0/0 precision, but also zero
    # recall gain, so it contributes nothing (scikit-learn drops those clips).
    precision = np.divide(tps, ps, out=np.zeros_like(tps), where=ps != 0)
    recall = np.divide(tps, n_pos, out=np.zeros_like(tps), where=n_pos != 0)
    gain = np.diff(recall, axis=1, prepend=0.0)
    ap = np.maximum(np.sum(gain * precision, axis=1), 0.0)
    return np.where(n_pos[:, 0] > 0, ap, np.nan)


def weighted_average_precision(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike
) -> NDArray[np.float64]:
    """Step-wise average precision for every row of a weight matrix.

    For each row ``w`` of ``weights`` this is
    ``sklearn.metrics.average_precision_score(labels, scores, sample_weight=w)``:
    clips sorted by score (descending), one operating point per distinct score
    (ties grouped), ``AP = sum_k (R_k - R_{k-1}) * P_k`` with weighted
    ``P_k = TP_k / (TP_k + FP_k)`` and ``R_k = TP_k / TP_total``. Zero-weight
    clips contribute nothing.

    Args:
        labels: (n,) 0/1 labels.
        scores: (n,) finite scores.
        weights: (B, n) non-negative weights (e.g. :func:`resample_weights`).

    Returns:
        (B,) float64 APs; NaN where a row's weighted positive count is 0.

    Raises:
        ValueError: on mismatched shapes, labels outside {0, 1}, non-finite
            scores, or negative or non-finite weights.
    """
    y, s = _labels_and_scores(labels, scores, ndim=1)
    w = _as_weights(weights, y.size)
    return _weighted_ap(y.astype(np.float64), s, w)


def _labels_and_scores(labels: ArrayLike, scores: ArrayLike, ndim: int) -> tuple[NDArray, NDArray[np.float64]]:
    """Validated ``labels`` (0/1) and finite float64 ``scores`` of one shape with ``ndim`` axes."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != ndim or s.shape != y.shape:
        expected = "1-D" if ndim == 1 else "(n, C)"
        raise ValueError(f"labels and scores must be {expected} of equal shape, got {y.shape} and {s.shape}")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError("labels must contain only 0/1")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return y, s


def _masked_mean(values: NDArray[np.float64], keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Row means of ``values`` (B, K) over the ``keep`` entries; NaN where none is kept."""
    count = keep.sum(axis=1)
    total = np.where(keep, values, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)


def weighted_tagging_metrics(
    labels: ArrayLike,
    scores: ArrayLike,
    weights: ArrayLike,
    train_pos_rate: ArrayLike,
) -> dict[str, NDArray[np.float64]]:
    """``probes.metrics.tagging_metrics`` for every row of a weight matrix.

    For integer weights ``w = bincount(idx)`` the row's values equal
    ``tagging_metrics(labels[idx], scores[idx], train_pos_rate)``: per-class
    AP (:func:`weighted_average_precision`) over classes with a weighted
    positive, their mean (mAP), the mean per head/mid/tail bucket of
    :func:`probes.metrics.frequency_buckets` (NaN for a bucket without such a
    class), micro F1 (OF1) and mean per-class F1 over classes with positives
    (CF1), both from weighted TP/FP/FN counts at ``score >= F1_THRESHOLD``.

    Args:
        labels: (n, C) 0/1 labels.
        scores: (n, C) finite scores.
        weights: (B, n) non-negative weights.
        train_pos_rate: (C,) per-class positive rate of the training split.

    Returns:
        ``{"mAP", "AP_head", "AP_mid", "AP_tail", "OF1", "CF1"}``, each (B,)
        float64. A row with no weighted positive in any class is NaN in every
        key (where ``tagging_metrics`` would raise).

    Raises:
        ValueError: on mismatched shapes, labels outside {0, 1}, non-finite
            scores or rates, or negative or non-finite weights.
    """
    y, s = _labels_and_scores(labels, scores, ndim=2)
    rate = np.asarray(train_pos_rate, dtype=np.float64)
    if rate.shape != (y.shape[1],):
        raise ValueError(f"train_pos_rate must have shape ({y.shape[1]},), got {rate.shape}")
    w = _as_weights(weights, y.shape[0])
    yf = y.astype(np.float64)

    ap = np.stack([_weighted_ap(yf[:, c], s[:, c], w) for c in range(y.shape[1])], axis=1)
    has_pos = np.isfinite(ap)
    head, mid, tail = frequency_buckets(rate)

    # Weighted confusion counts per (resample, class) are matrix products with the clip weights.
    pred = s >= F1_THRESHOLD
    tp = w @ (pred & (y == 1)).astype(np.float64)
    fp = w @ (pred & (y == 0)).astype(np.float64)
    fn = w @ (~pred & (y == 1)).astype(np.float64)
    tp_all, fp_all, fn_all = tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)
    of1_den = 2.0 * tp_all + fp_all + fn_all
    of1 = np.divide(2.0 * tp_all, of1_den, out=np.full(of1_den.shape, np.nan), where=of1_den > 0)
    f1_den = 2.0 * tp + fp + fn
    f1 = np.divide(2.0 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)

    out = {
        "mAP": _masked_mean(ap, has_pos),
        "AP_head": _masked_mean(ap[:, head], has_pos[:, head]),
        "AP_mid": _masked_mean(ap[:, mid], has_pos[:, mid]),
        "AP_tail": _masked_mean(ap[:, tail], has_pos[:, tail]),
        "OF1": of1,
        "CF1": _masked_mean(f1, has_pos),
    }
    none = ~has_pos.any(axis=1)
    for key in TAGGING_KEYS:
        out[key][none] = np.nan
    return out


def weighted_nanmean(values: ArrayLike, weights: ArrayLike) -> NDArray[np.float64]:
    """Weighted mean of the finite entries of ``values`` for every weight row.

    ``sum_i w_i v_i / sum_i w_i`` over clips ``i`` with finite ``v_i`` (NaN
    marks a clip without a score), i.e. ``np.nanmean(values[idx])`` for
    ``w = bincount(idx)``.

    Args:
        values: (n,) per-clip values, NaN where undefined.
        weights: (B, n) non-negative weights.

    Returns:
        (B,) float64 means; NaN where a row puts no weight on a finite value.

    Raises:
        ValueError: on a non-1-D ``values``, mismatched shapes, or negative or
            non-finite weights.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    w = _as_weights(weights, v.size)
    finite = np.isfinite(v)
    total = w @ np.where(finite, v, 0.0)
    mass = w @ finite.astype(np.float64)
    return np.divide(total, mass, out=np.full(mass.shape, np.nan), where=mass > 0)


def percentile_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the resampled statistic.

    ``values`` is (B,) or (S, B); for (S, B) (S training seeds scored on the
    same resamples) each resample is first averaged over the seeds, ignoring
    NaN. Returns ``np.nanpercentile`` at ``100 * (1 - level) / 2`` and
    ``100 * (1 + level) / 2`` (linear interpolation) over the resamples.

    Returns:
        ``(lower, upper)`` floats; ``(nan, nan)`` if every value is NaN.

    Raises:
        ValueError: if ``level`` is not in (0, 1) or ``values`` is not 1-D or 2-D.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2:
        v = _masked_mean(v.T, ~np.isnan(v.T))
    if v.ndim != 1:
        raise ValueError(f"values must have shape (B,) or (S, B), got shape {v.shape}")
    if np.all(np.isnan(v)):
        return math.nan, math.nan
    alpha = 100.0 * (1.0 - level) / 2.0
    lower, upper = np.nanpercentile(v, [alpha, 100.0 - alpha])
    return float(lower), float(upper)
