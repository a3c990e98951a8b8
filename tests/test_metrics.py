"""Tests for probes.metrics (tagging_metrics, depth_metrics, frequency_buckets)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_percentage_error,
)

from probes.metrics import depth_metrics, frequency_buckets, tagging_metrics

# --------------------------------------------------------------------------- #
# Tagging: hand-computed cases
# --------------------------------------------------------------------------- #
# 4 samples x 2 classes.
HAND_Y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
HAND_S = np.array([[0.9, 0.6], [0.8, 0.4], [0.7, 0.5], [0.1, 0.2]])


def test_tagging_hand_computed_ap_and_f1() -> None:
    # Class 0: ranking by score 0.9, 0.8, 0.7, 0.1 -> labels 1, 0, 1, 0; N_pos = 2.
    #   k=1: P=1/1, R=1/2 -> contributes 1 * (1/2 - 0)     = 1/2
    #   k=2: P=1/2, R=1/2 -> contributes 1/2 * 0            = 0
    #   k=3: P=2/3, R=1   -> contributes 2/3 * (1 - 1/2)    = 1/3
    #   AP_0 = 1/2 + 1/3 = 5/6
    # Class 1: ranking 0.6, 0.5, 0.4, 0.2 -> labels 0, 0, 1, 0; N_pos = 1.
    #   k=3: P=1/3, R=1   -> AP_1 = 1/3
    # mAP = (5/6 + 1/3) / 2 = 7/12
    # F1 at p >= 0.5 (0.5 itself is positive):
    #   class 0 pred [1,1,1,0] vs [1,0,1,0]: TP=2 FP=1 FN=0 -> F1 = 4/5
    #   class 1 pred [1,0,1,0] vs [0,1,0,0]: TP=0 FP=2 FN=1 -> F1 = 0
    #   CF1 = (4/5 + 0) / 2 = 2/5
    #   OF1: TP=2 FP=3 FN=1 -> 2*2 / (2*2 + 3 + 1) = 1/2
    # Buckets: C=2 -> floor(2/3)=0 -> head, mid empty (NaN), tail = both -> 7/12.
    m = tagging_metrics(HAND_Y, HAND_S)
    assert set(m) == {"mAP", "AP_head", "AP_mid", "AP_tail", "OF1", "CF1"}
    assert m["mAP"] == pytest.approx(7 / 12)
    assert math.isnan(m["AP_head"])
    assert math.isnan(m["AP_mid"])
    assert m["AP_tail"] == pytest.approx(7 / 12)
    assert m["CF1"] == pytest.approx(2 / 5)
    assert m["OF1"] == pytest.approx(1 / 2)
    assert all(isinstance(v, float) for v in m.values())


def test_tagging_hand_ap_matches_sklearn_per_class() -> None:
    assert average_precision_score(HAND_Y[:, 0], HAND_S[:, 0]) == pytest.approx(5 / 6)
    assert average_precision_score(HAND_Y[:, 1], HAND_S[:, 1]) == pytest.approx(1 / 3)


def test_tagging_perfect_ranking() -> None:
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    s = np.where(y == 1, 0.9, 0.1)
    m = tagging_metrics(y, s)
    for key in ("mAP", "AP_tail", "OF1", "CF1"):
        assert m[key] == pytest.approx(1.0)
    # C=3 -> 1/1/1 buckets, all classes have positives.
    assert m["AP_head"] == pytest.approx(1.0)
    assert m["AP_mid"] == pytest.approx(1.0)


def test_tagging_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    n, c = 200, 20
    y = (rng.random((n, c)) < np.linspace(0.02, 0.6, c)).astype(int)
    y[:, 3] = 0  # a class with no positives
    s = rng.random((n, c))
    s[rng.random((n, c)) < 0.05] = 0.5  # exercise the inclusive threshold
    m = tagging_metrics(y, s)

    has_pos = y.sum(0) > 0
    aps = np.array(
        [average_precision_score(y[:, j], s[:, j]) if has_pos[j] else np.nan for j in range(c)]
    )
    pred = (s >= 0.5).astype(int)
    assert m["mAP"] == pytest.approx(np.nanmean(aps))
    assert m["OF1"] == pytest.approx(f1_score(y, pred, average="micro"))
    per_class = f1_score(y, pred, average=None, zero_division=0)
    assert m["CF1"] == pytest.approx(per_class[has_pos].mean())

    # Buckets from y's own positive rate (train_pos_rate=None).
    order = np.argsort(-y.mean(0), kind="stable")
    head, mid, tail = order[:6], order[6:12], order[12:]
    assert m["AP_head"] == pytest.approx(np.nanmean(aps[head]))
    assert m["AP_mid"] == pytest.approx(np.nanmean(aps[mid]))
    assert m["AP_tail"] == pytest.approx(np.nanmean(aps[tail]))
    for v in m.values():
        assert 0.0 <= v <= 1.0


def test_frequency_buckets_c20_sizes_and_order() -> None:
    rate = np.arange(20) / 100.0  # class 19 most frequent, class 0 least
    head, mid, tail = frequency_buckets(rate)
    assert (len(head), len(mid), len(tail)) == (6, 6, 8)
    assert head.tolist() == [19, 18, 17, 16, 15, 14]
    assert mid.tolist() == [13, 12, 11, 10, 9, 8]
    assert tail.tolist() == [7, 6, 5, 4, 3, 2, 1, 0]


def test_frequency_buckets_ties_are_stable() -> None:
    # Rates sorted descending, ties keep class-index order:
    #   0.5: classes 1, 2, 4; 0.2: classes 0, 5; 0.1: class 3
    #   -> order 1, 2, 4, 0, 5, 3 ; C=6 -> 2/2/2
    rate = [0.2, 0.5, 0.5, 0.1, 0.5, 0.2]
    head, mid, tail = frequency_buckets(rate)
    assert head.tolist() == [1, 2]
    assert mid.tolist() == [4, 0]
    assert tail.tolist() == [5, 3]


@pytest.mark.parametrize("c,sizes", [(1, (0, 0, 1)), (2, (0, 0, 2)), (3, (1, 1, 1)), (7, (2, 2, 3))])
def test_frequency_buckets_sizes(c: int, sizes: tuple[int, int, int]) -> None:
    assert tuple(len(b) for b in frequency_buckets(np.zeros(c))) == sizes


def _classes_with_known_ap(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels/scores where class j has AP exactly 1/(j+1).

    Class j has a single positive, ranked at position j+1 among the class's
    (strictly decreasing) scores, so AP_j = precision at that rank = 1/(j+1).
    Returns (y, s, ap).
    """
    n = c + 1
    y = np.zeros((n, c), dtype=int)
    s = np.zeros((n, c))
    for j in range(c):
        # scores strictly decreasing down the rows; the positive sits at row j
        s[:, j] = np.linspace(0.99, 0.01, n)
        y[j, j] = 1
    ap = 1.0 / (np.arange(c) + 1.0)
    return y, s, ap


def test_tagging_buckets_use_train_pos_rate_c20() -> None:
    y, s, ap = _classes_with_known_ap(20)
    # Sanity: the constructed APs are what sklearn reports.
    for j in range(20):
        assert average_precision_score(y[:, j], s[:, j]) == pytest.approx(ap[j])
    # Train rate: class j has rate j (so classes 19..14 head, 13..8 mid, 7..0 tail).
    rate = np.arange(20, dtype=float)
    m = tagging_metrics(y, s, train_pos_rate=rate)
    assert m["AP_head"] == pytest.approx(ap[14:20].mean())
    assert m["AP_mid"] == pytest.approx(ap[8:14].mean())
    assert m["AP_tail"] == pytest.approx(ap[0:8].mean())
    assert m["mAP"] == pytest.approx(ap.mean())
    # Reversed rate swaps head and tail membership.
    m2 = tagging_metrics(y, s, train_pos_rate=rate[::-1].copy())
    assert m2["AP_head"] == pytest.approx(ap[0:6].mean())
    assert m2["AP_mid"] == pytest.approx(ap[6:12].mean())
    assert m2["AP_tail"] == pytest.approx(ap[12:20].mean())


def test_tagging_buckets_with_ties_in_train_rate() -> None:
    y, s, ap = _classes_with_known_ap(6)
    # order 1, 2, 4, 0, 5, 3 (see test_frequency_buckets_ties_are_stable)
    m = tagging_metrics(y, s, train_pos_rate=[0.2, 0.5, 0.5, 0.1, 0.5, 0.2])
    assert m["AP_head"] == pytest.approx((ap[1] + ap[2]) / 2)
    assert m["AP_mid"] == pytest.approx((ap[4] + ap[0]) / 2)
    assert m["AP_tail"] == pytest.approx((ap[5] + ap[3]) / 2)


def test_tagging_class_without_positives_is_skipped() -> None:
    # Add a third class with no positives (and high scores everywhere, which would
    # give AP 0 / drag CF1 down if it were not skipped).
    y = np.concatenate([HAND_Y, np.zeros((4, 1), dtype=int)], axis=1)
    s = np.concatenate([HAND_S, np.full((4, 1), 0.95)], axis=1)
    m = tagging_metrics(y, s)
    assert m["mAP"] == pytest.approx(7 / 12)
    assert m["CF1"] == pytest.approx(2 / 5)
    # OF1 is micro over all cells: the 4 extra false positives count.
    # TP=2, FP=3+4=7, FN=1 -> 4 / (4 + 7 + 1) = 1/3
    assert m["OF1"] == pytest.approx(1 / 3)


def test_tagging_bucket_without_positives_is_nan() -> None:
    # C=3, class 0 is the head by train rate but has no positives in y_true.
    y = np.array([[0, 1, 1], [0, 0, 1], [0, 1, 0]])
    s = np.array([[0.9, 0.8, 0.7], [0.1, 0.2, 0.6], [0.3, 0.9, 0.1]])
    m = tagging_metrics(y, s, train_pos_rate=[0.9, 0.5, 0.1])
    assert math.isnan(m["AP_head"])
    assert m["AP_mid"] == pytest.approx(1.0)  # class 1: positives ranked 1st, 2nd
    assert m["AP_tail"] == pytest.approx(1.0)  # class 2: positives ranked 1st, 2nd
    assert m["mAP"] == pytest.approx(1.0)


def test_tagging_threshold_is_inclusive() -> None:
    y = np.array([[1], [0]])
    # Exactly 0.5 counts as a positive prediction -> perfect F1.
    m = tagging_metrics(y, np.array([[0.5], [0.2]]))
    assert m["OF1"] == pytest.approx(1.0)
    assert m["CF1"] == pytest.approx(1.0)
    # Just below 0.5 is negative -> TP=0 -> F1 = 0 (AP unchanged = 1).
    m = tagging_metrics(y, np.array([[np.nextafter(0.5, 0.0)], [0.2]]))
    assert m["OF1"] == 0.0
    assert m["CF1"] == 0.0
    assert m["mAP"] == pytest.approx(1.0)


def test_tagging_single_class_f1_is_not_accuracy() -> None:
    # C=1: one positive, never predicted (all scores < 0.5).
    # TP=0 FP=0 FN=1 -> F1 = 0 (accuracy would be 3/4; sklearn's "micro" on a
    # (N, 1) column vector treats it as multiclass and returns that instead).
    y = np.array([[1], [0], [0], [0]])
    s = np.array([[0.4], [0.1], [0.2], [0.3]])
    m = tagging_metrics(y, s)
    assert m["OF1"] == 0.0
    assert m["CF1"] == 0.0
    assert m["mAP"] == pytest.approx(1.0)  # positive ranked first
    assert m["AP_tail"] == pytest.approx(1.0)  # C=1 -> 0/0/1 buckets
    assert math.isnan(m["AP_head"]) and math.isnan(m["AP_mid"])


def test_tagging_accepts_bool_labels() -> None:
    m = tagging_metrics(HAND_Y.astype(bool), HAND_S)
    assert m["mAP"] == pytest.approx(7 / 12)


@pytest.mark.parametrize(
    "y,s,rate,match",
    [
        (np.ones(4), np.ones(4), None, "y_true"),  # 1-D labels
        (HAND_Y, HAND_S[:, 0], None, "y_score"),  # 1-D scores
        (HAND_Y, HAND_S[:3], None, r"\(4, 2\).*\(3, 2\)"),  # shape mismatch
        (HAND_Y, np.where(HAND_S > 0.85, np.nan, HAND_S), None, "y_score.*finite"),
        (HAND_Y, np.where(HAND_S > 0.85, np.inf, HAND_S), None, "y_score.*finite"),
        (HAND_Y, HAND_S * 2.0, None, r"y_score.*\[0, 1\]"),
        (HAND_Y * 2, HAND_S, None, "y_true.*0/1"),
        (HAND_Y - 0.5, HAND_S, None, "y_true.*0/1"),
        (HAND_Y, HAND_S, [0.5, 0.5, 0.5], r"train_pos_rate.*\(2,\).*\(3,\)"),
        (HAND_Y, HAND_S, [[0.5, 0.5]], r"train_pos_rate.*\(1, 2\)"),
        (HAND_Y, HAND_S, [0.5, np.nan], "train_pos_rate.*finite"),
        (np.zeros((4, 2)), HAND_S, None, "no positive"),
        (np.zeros((0, 2)), np.zeros((0, 2)), None, "no positive"),
    ],
)
def test_tagging_value_errors(y, s, rate, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        tagging_metrics(y, s, train_pos_rate=rate)


# --------------------------------------------------------------------------- #
# Depth
# --------------------------------------------------------------------------- #
def test_depth_hand_computed() -> None:
    gt = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([2.0, 4.0, 6.0, 16.0])
    mask = np.ones(4, dtype=bool)
    # median(gt) = 2.5, median(pred) = 5 -> scale 0.5 -> pred_s = [1, 2, 3, 8]
    # |pred_s - gt| / gt = [0, 0, 0, 4/4=1] -> AbsRel = 1/4
    # ratios max(p/g, g/p) = [1, 1, 1, 2] -> 3 of 4 below 1.25 -> delta1 = 3/4
    m = depth_metrics(pred, gt, mask)
    assert set(m) == {"AbsRel", "delta1"}
    assert m["AbsRel"] == pytest.approx(0.25)
    assert m["delta1"] == pytest.approx(0.75)
    assert all(isinstance(v, float) for v in m.values())


def test_depth_hand_computed_delta_boundary() -> None:
    gt = np.array([1.0, 1.0, 1.0])
    pred = np.array([0.5, 1.0, 1.25])
    # median(gt)=1, median(pred)=1 -> no scaling.
    # AbsRel = (0.5 + 0 + 0.25) / 3 = 0.25
    # ratios [2, 1, 1.25]: 1.25 is NOT < 1.25 -> delta1 = 1/3
    m = depth_metrics(pred, gt, np.ones(3, dtype=bool))
    assert m["AbsRel"] == pytest.approx(0.25)
    assert m["delta1"] == pytest.approx(1 / 3)


def test_depth_perfect_prediction() -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.5, 10.0, size=(3, 8, 8))
    m = depth_metrics(gt.copy(), gt, np.ones_like(gt, dtype=bool))
    assert m["AbsRel"] == pytest.approx(0.0, abs=1e-12)
    assert m["delta1"] == 1.0
    # A perfectly shaped prediction off by a global scale is also perfect.
    m = depth_metrics(gt * 0.01, gt, np.ones_like(gt, dtype=bool))
    assert m["AbsRel"] == pytest.approx(0.0, abs=1e-12)
    assert m["delta1"] == 1.0


def test_depth_matches_sklearn_mape_after_scaling() -> None:
    rng = np.random.default_rng(2)
    gt = rng.uniform(0.5, 10.0, size=(4, 16, 16))
    pred = gt * rng.uniform(0.6, 1.6, size=gt.shape) * 3.0
    mask = rng.random(gt.shape) < 0.7
    m = depth_metrics(pred, gt, mask)
    g, p = gt[mask], pred[mask]
    ps = p * np.median(g) / np.median(p)
    assert m["AbsRel"] == pytest.approx(mean_absolute_percentage_error(g, ps))
    assert m["delta1"] == pytest.approx(np.mean(np.maximum(ps / g, g / ps) < 1.25))


def test_depth_median_scaling_invariance() -> None:
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 10.0, size=(2, 10, 10))
    pred = gt * rng.uniform(0.5, 2.0, size=gt.shape)
    mask = rng.random(gt.shape) < 0.8
    a = depth_metrics(pred, gt, mask)
    b = depth_metrics(pred * 7.0, gt, mask)
    assert b["AbsRel"] == pytest.approx(a["AbsRel"])
    assert b["delta1"] == pytest.approx(a["delta1"])


def test_depth_mask_honoured() -> None:
    rng = np.random.default_rng(4)
    gt = rng.uniform(0.5, 10.0, size=(2, 12, 12))
    pred = gt * rng.uniform(0.7, 1.4, size=gt.shape)
    mask = rng.random(gt.shape) < 0.5
    ref = depth_metrics(pred, gt, mask)
    out = ~mask
    pred_g = pred.copy()
    gt_g = gt.copy()
    garbage = rng.choice(np.array([np.nan, np.inf, -5.0, 0.0, 1e9]), size=int(out.sum()))
    pred_g[out] = garbage
    gt_g[out] = rng.permutation(garbage)
    got = depth_metrics(pred_g, gt_g, mask)
    assert got["AbsRel"] == pytest.approx(ref["AbsRel"])
    assert got["delta1"] == pytest.approx(ref["delta1"])
    # Same result as evaluating the masked pixels on their own.
    alone = depth_metrics(pred[mask], gt[mask], np.ones(int(mask.sum()), dtype=bool))
    assert alone["AbsRel"] == pytest.approx(ref["AbsRel"])


def test_depth_invalid_gt_and_pred_excluded_inside_mask() -> None:
    gt = np.array([1.0, 2.0, 3.0, 4.0, 0.0, -1.0, np.nan, 5.0])
    pred = np.array([2.0, 4.0, 6.0, 16.0, 1.0, 1.0, 1.0, np.inf])
    # Only the first 4 pixels are valid -> same as test_depth_hand_computed.
    m = depth_metrics(pred, gt, np.ones(8, dtype=bool))
    assert m["AbsRel"] == pytest.approx(0.25)
    assert m["delta1"] == pytest.approx(0.75)


def test_depth_nonpositive_scaled_pred_fails_delta1() -> None:
    gt = np.array([1.0, 1.0, 1.0])
    pred = np.array([-1.0, 1.0, 1.0])
    # median(pred)=1 -> no scaling; pixel 0: |-1 - 1|/1 = 2 -> AbsRel = 2/3.
    # pixel 0 has pred <= 0 -> not within 1.25 -> delta1 = 2/3.
    m = depth_metrics(pred, gt, np.ones(3, dtype=bool))
    assert m["AbsRel"] == pytest.approx(2 / 3)
    assert m["delta1"] == pytest.approx(2 / 3)


def test_depth_accepts_01_numeric_mask() -> None:
    gt = np.array([1.0, 2.0, 3.0, 4.0, 9.0])
    pred = np.array([2.0, 4.0, 6.0, 16.0, 100.0])
    m = depth_metrics(pred, gt, np.array([1, 1, 1, 1, 0]))
    assert m["AbsRel"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "pred,gt,mask,match",
    [
        (np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 3), bool), r"gt shape \(3, 2\).*pred shape \(2, 3\)"),
        (np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2), bool), r"mask shape \(2, 2\).*pred shape \(2, 3\)"),
        (np.ones(3), np.ones(3), np.array([0.5, 1.0, 1.0]), "mask must be boolean"),
        (np.ones(3), np.ones(3), np.zeros(3, bool), "mask selects no valid pixel"),
        (np.ones(3), np.array([0.0, -1.0, np.nan]), np.ones(3, bool), "mask selects no valid pixel"),
        (np.full(3, np.nan), np.ones(3), np.ones(3, bool), "mask selects no valid pixel"),
        (np.array([-1.0, -2.0, 3.0]), np.ones(3), np.ones(3, bool), r"median\(pred\[mask\]\)"),
        (np.zeros(3), np.ones(3), np.ones(3, bool), r"median\(pred\[mask\]\)"),
    ],
)
def test_depth_value_errors(pred, gt, mask, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        depth_metrics(pred, gt, mask)
