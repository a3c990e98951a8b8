"""Tests for probes.metrics: tagging, depth, instance, point-map and pose metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_percentage_error,
)

from probes.metrics import (
    depth_metrics,
    frequency_buckets,
    instance_metrics,
    pointmap_error,
    pose_auc,
    pose_auc_reference31,
    pose_errors,
    pose_metrics,
    reliability_mask,
    tagging_metrics,
    umeyama_similarity,
)

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


# --------------------------------------------------------------------------- #
# Umeyama similarity
# --------------------------------------------------------------------------- #
def _random_similarity(seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    rot = Rotation.random(random_state=seed).as_matrix()
    return 3.7, rot, np.array([0.5, -2.0, 10.0])


def test_umeyama_recovers_exact_similarity() -> None:
    rng = np.random.default_rng(5)
    src = rng.normal(size=(50, 3))
    s, rot, t = _random_similarity(5)
    dst = s * src @ rot.T + t
    s_hat, rot_hat, t_hat = umeyama_similarity(src, dst)
    assert s_hat == pytest.approx(s)
    np.testing.assert_allclose(rot_hat, rot, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)


def test_umeyama_reflection_corrected() -> None:
    # dst is a mirror image of src (x -> -x): the best *rotation* has det +1.
    rng = np.random.default_rng(6)
    src = rng.normal(size=(30, 3))
    dst = src * np.array([-1.0, 1.0, 1.0])
    _, rot, _ = umeyama_similarity(src, dst)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)


def test_umeyama_weights_ignore_zero_weight_outlier() -> None:
    rng = np.random.default_rng(7)
    src = rng.normal(size=(20, 3))
    s, rot, t = _random_similarity(7)
    dst = s * src @ rot.T + t
    dst[0] += 100.0  # an outlier with weight 0 has no influence
    w = np.ones(20)
    w[0] = 0.0
    s_hat, rot_hat, t_hat = umeyama_similarity(src, dst, weights=w)
    assert s_hat == pytest.approx(s)
    np.testing.assert_allclose(rot_hat, rot, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)


@pytest.mark.parametrize(
    "src,dst,weights,match",
    [
        (np.ones((4, 2)), np.ones((4, 2)), None, r"src must have shape \(N, 3\)"),
        (np.eye(3), np.eye(3)[:2], None, r"dst shape \(2, 3\) does not match src shape \(3, 3\)"),
        (np.eye(3)[:2], np.eye(3)[:2], None, ">= 3 points"),
        (np.eye(3), np.eye(3), [1.0, 1.0, 0.0], ">= 3 points"),
        (np.eye(3), np.eye(3), [1.0, 1.0], r"weights must have shape \(3,\)"),
        (np.eye(3), np.eye(3), [1.0, -1.0, 1.0], "non-negative"),
        (np.full((5, 3), 2.0), np.eye(5, 3), None, "zero variance"),
        (np.where(np.eye(3) > 0, np.nan, 0.0), np.eye(3), None, "finite"),
    ],
)
def test_umeyama_value_errors(src, dst, weights, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        umeyama_similarity(src, dst, weights)


# --------------------------------------------------------------------------- #
# Instance grouping
# --------------------------------------------------------------------------- #
# Two views of a 2x3 image; pixel positions a b c / d e f.
#   gt view 0:  a1 b1 c2 / d0 e3 f3      gt view 1:  a1 b0 c2 / d2 e2 f0
#   pred view 0: a5 b5 c7 / d9 e7 f-1    pred view 1: a5 b7 c7 / d7 e-1 f5
# Valid pixels are gt != 0, so d (view 0), b and f (view 1) are void: their
# labels 9, 7, 5 are never read (cluster 9 lives only on void pixels).
INST_GT = np.array([[[1, 1, 2], [0, 3, 3]], [[1, 0, 2], [2, 2, 0]]])
INST_PRED = np.array([[[5, 5, 7], [9, 7, -1]], [[5, 7, 7], [7, -1, 5]]])


def test_instance_hand_computed() -> None:
    # Aggregate masks (OR over the 2 views, valid pixels only):
    #   G1 = {a, b}   G2 = {c} | {c, d, e} = {c, d, e}   G3 = {e, f}
    #   P5 = {a, b} | {a} = {a, b}   P7 = {c, e} | {c, d} = {c, d, e}
    # Matching by aggregate IoU:
    #   G1: P5 2/2 = 1, P7 0            -> p* = 5
    #   G2: P5 0,       P7 3/3 = 1      -> p* = 7
    #   G3: P5 0,       P7 |{e}| / |{c, d, e, f}| = 1/4 -> p* = 7 (7 matches two instances)
    # Per-view IoUs (valid pixels of that view):
    #   G1 view 0: {a, b} vs {a, b} = 1; view 1: {a} vs {a} = 1 -> mean 1, success
    #   G2 view 0: {c} vs {c, e} = 1/2;  view 1: {c, d, e} vs {c, d} = 2/3
    #      -> mean 7/12, success (1/2 >= 0.5 counts)
    #   G3 visible in view 0 only: {e, f} vs {c, e} = 1/3 -> mean 1/3, failure
    # T-mIoU = (1 + 7/12 + 1/3) / 3 = (12 + 7 + 4) / 36 = 23/36 ; T-SR = 2/3
    m = instance_metrics(INST_PRED, INST_GT)
    assert set(m) == {"T-mIoU", "T-SR"}
    assert m["T-mIoU"] == pytest.approx(23 / 36)
    assert m["T-SR"] == pytest.approx(2 / 3)
    assert all(isinstance(v, float) for v in m.values())


def test_instance_permuting_cluster_labels_changes_nothing() -> None:
    relabel = {5: 12, 7: 0, 9: 3, -1: -1}
    pred = np.vectorize(relabel.get)(INST_PRED)
    m = instance_metrics(pred, INST_GT)
    assert m["T-mIoU"] == pytest.approx(23 / 36)
    assert m["T-SR"] == pytest.approx(2 / 3)
    # ... and on a larger random scene with structured clusters.
    rng = np.random.default_rng(8)
    gt = np.repeat(np.repeat(rng.integers(0, 6, (3, 4, 5)), 3, axis=1), 3, axis=2)
    pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(-1, 8, gt.shape), gt)
    perm = rng.permutation(8) + 20
    pred_perm = np.where(pred >= 0, perm[np.maximum(pred, 0)], -1)
    assert instance_metrics(pred_perm, gt) == pytest.approx(instance_metrics(pred, gt))


def test_instance_identical_labels_are_perfect() -> None:
    rng = np.random.default_rng(9)
    gt = rng.integers(0, 10, (4, 6, 7))
    # Void pixels may carry anything, including noise.
    pred = np.where(gt == 0, rng.integers(-1, 3, gt.shape), gt + 100)
    m = instance_metrics(pred, gt)
    assert m == {"T-mIoU": 1.0, "T-SR": 1.0}


def test_instance_unmatched_instance_scores_zero() -> None:
    # Instance 1 is all noise; instance 2 is predicted exactly as cluster 0.
    # Instance 1: no overlapping cluster -> IoUs 0, failure. Instance 2: 1, success.
    # T-mIoU = (0 + 1) / 2 = 1/2, T-SR = 1/2.
    gt = np.array([[[1, 1, 2, 2]], [[1, 2, 2, 0]]])
    pred = np.array([[[-1, -1, 0, 0]], [[-1, 0, 0, 0]]])
    assert instance_metrics(pred, gt) == {"T-mIoU": 0.5, "T-SR": 0.5}
    # Without any cluster at all, every instance scores 0.
    assert instance_metrics(np.full_like(gt, -1), gt) == {"T-mIoU": 0.0, "T-SR": 0.0}


def test_instance_tie_goes_to_smallest_cluster_label() -> None:
    # Three views of 2 pixels, all instance 1. Clusters 3 and 4 both cover both
    # positions across views -> aggregate IoU 1 for each: a tie.
    #   p* = 3: views IoU 1, 0, 1 -> mean 2/3, failure
    #   (p* = 4 would give 0, 1, 0 -> mean 1/3)
    gt = np.ones((3, 1, 2), dtype=int)
    pred = np.array([[[3, 3]], [[4, 4]], [[3, 3]]])
    m = instance_metrics(pred, gt)
    assert m["T-mIoU"] == pytest.approx(2 / 3)
    assert m["T-SR"] == 0.0


def test_instance_no_instance_is_nan() -> None:
    m = instance_metrics(np.zeros((2, 3, 3), dtype=int), np.zeros((2, 3, 3), dtype=int))
    assert math.isnan(m["T-mIoU"]) and math.isnan(m["T-SR"])


@pytest.mark.parametrize(
    "pred,gt,match",
    [
        (INST_PRED.astype(float), INST_GT, "pred_labels must be an integer array"),
        (INST_PRED, INST_GT.astype(float), "gt_ids must be an integer array"),
        (INST_PRED[0], INST_GT[0], r"pred_labels must have shape \(S, H, W\)"),
        (INST_PRED[:1], INST_GT, r"pred_labels shape \(1, 2, 3\) does not match gt_ids shape \(2, 2, 3\)"),
        (INST_PRED - 3, INST_GT, "pred_labels must be >= -1"),
        (INST_PRED, -INST_GT, "gt_ids must be >= 0"),
    ],
)
def test_instance_value_errors(pred, gt, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        instance_metrics(pred, gt)


# --------------------------------------------------------------------------- #
# Reliability mask and point maps
# --------------------------------------------------------------------------- #
def test_reliability_mask_top_quarter() -> None:
    conf = np.arange(1.0, 9.0).reshape(2, 4)  # 1..8
    # 75th percentile (linear) of 1..8: position 0.75 * 7 = 5.25 -> 6 + 0.25 = 6.25 -> {7, 8}
    np.testing.assert_array_equal(reliability_mask(conf), conf >= 7)
    # Among valid pixels only: drop 7 and 8 -> values 1..6, position 3.75 -> 4.75 -> {5, 6}
    valid = conf <= 6
    np.testing.assert_array_equal(reliability_mask(conf, valid), (conf >= 5) & valid)
    # Non-finite confidence is never valid.
    conf_nan = conf.copy()
    conf_nan[1, 3] = np.nan  # drop 8 -> 1..7, position 4.5 -> 5.5 -> {6, 7}
    np.testing.assert_array_equal(reliability_mask(conf_nan), conf_nan >= 6)


def test_reliability_mask_constant_keeps_all_valid() -> None:
    conf = np.full((2, 3, 3), 0.1)
    valid = np.ones(conf.shape, dtype=bool)
    valid[0, 0, 0] = False
    np.testing.assert_array_equal(reliability_mask(conf, valid), valid)


@pytest.mark.parametrize(
    "conf,valid,match",
    [
        (np.ones(3), np.ones(2, bool), r"valid shape \(2,\) does not match confidence shape \(3,\)"),
        (np.ones(3), np.array([0.5, 1, 1]), "valid must be boolean"),
        (np.full(3, np.nan), None, "no valid pixel"),
        (np.ones(3), np.zeros(3, bool), "no valid pixel"),
    ],
)
def test_reliability_mask_value_errors(conf, valid, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        reliability_mask(conf, valid)


def test_pointmap_error_zero_for_similarity_of_gt() -> None:
    rng = np.random.default_rng(10)
    gt = rng.normal(size=(2, 5, 6, 3)) + np.array([0.0, 0.0, 4.0])
    s, rot, t = _random_similarity(10)
    pred = s * gt @ rot.T + t  # pred = similarity of gt -> aligning undoes it exactly
    conf = rng.uniform(1.0, 5.0, size=gt.shape[:3])
    mask = reliability_mask(conf)
    assert pointmap_error(pred, gt, conf, mask) == pytest.approx(0.0, abs=1e-10)


# One view of 1x6 pixels. The first 4 points (non-coplanar) form the fit mask;
# there pred = gt / 2, so the fit is s = 2, R = I, t = 0.
PM_GT = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 2, 2], [5, 5, 5]], dtype=float)
PM_PRED = PM_GT / 2
PM_PRED[4] += [1.5, 2.0, 0.0]  # aligned: gt + 2 * (1.5, 2, 0) = gt + (3, 4, 0) -> distance 5
PM_PRED[5] = np.nan  # non-finite pred: excluded from the error
PM_SHAPE = (1, 1, 6)
PM_MASK = np.array([True, True, True, True, False, False]).reshape(PM_SHAPE)


def test_pointmap_error_hand_computed() -> None:
    # distances [0, 0, 0, 0, 5], pixel 5 excluded.
    # conf all 1 -> 5 / 5 = 1
    conf = np.ones(PM_SHAPE)
    assert pointmap_error(PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), conf, PM_MASK) == pytest.approx(1.0)


def test_pointmap_error_confidence_weighting() -> None:
    # conf [1, 1, 1, 1, 2, 7] -> (2 * 5) / (1 + 1 + 1 + 1 + 2) = 10/6 = 5/3 (pixel 5 excluded)
    conf = np.array([1, 1, 1, 1, 2, 7], dtype=float).reshape(PM_SHAPE)
    got = pointmap_error(PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), conf, PM_MASK)
    assert got == pytest.approx(5 / 3)
    # conf 0 on the bad pixel -> 0
    conf = np.array([1, 1, 1, 1, 0, 1], dtype=float).reshape(PM_SHAPE)
    got = pointmap_error(PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), conf, PM_MASK)
    assert got == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "pred,gt,conf,mask,match",
    [
        (np.ones((1, 2, 3)), np.ones((1, 2, 3)), np.ones((1, 2)), np.ones((1, 2), bool), r"pred must have shape"),
        (np.ones((1, 1, 4, 3)), np.ones((1, 4, 1, 3)), np.ones((1, 1, 4)), np.ones((1, 1, 4), bool), "gt shape"),
        (PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), np.ones((1, 6)), PM_MASK, "conf shape"),
        (PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), np.ones(PM_SHAPE), PM_MASK[0], "mask shape"),
        (PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), np.ones(PM_SHAPE), np.zeros(PM_SHAPE, bool),
         "mask selects 0 pixels"),
        (PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), np.zeros(PM_SHAPE), PM_MASK, "conf sums to 0"),
        (PM_PRED.reshape(1, 1, 6, 3), PM_GT.reshape(1, 1, 6, 3), -np.ones(PM_SHAPE), PM_MASK, "non-negative"),
    ],
)
def test_pointmap_error_value_errors(pred, gt, conf, mask, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        pointmap_error(pred, gt, conf, mask)


# --------------------------------------------------------------------------- #
# Camera poses
# --------------------------------------------------------------------------- #
def _pose(rot: np.ndarray, t) -> np.ndarray:  # type: ignore[no-untyped-def]
    e = np.eye(4)
    e[:3, :3] = rot
    e[:3, 3] = t
    return e


def _rz(deg: float) -> np.ndarray:
    return Rotation.from_euler("z", deg, degrees=True).as_matrix()


def _random_poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rots = Rotation.random(n, random_state=seed).as_matrix()
    return np.stack([_pose(r, rng.normal(size=3)) for r in rots])


def test_pose_identical_is_perfect() -> None:
    e = _random_poses(5, 11)
    rot, trans = pose_errors(e, e)
    assert rot.shape == trans.shape == (10,)  # 5 * 4 / 2 pairs
    np.testing.assert_allclose(rot, 0.0, atol=1e-5)
    np.testing.assert_allclose(trans, 0.0, atol=1e-6)
    assert pose_metrics(e, e) == {"AUC@30": 1.0, "RRA@30": 1.0, "RTA@30": 1.0}
    assert pose_metrics(e[:, :3], e[:, :3]) == {"AUC@30": 1.0, "RRA@30": 1.0, "RTA@30": 1.0}


def test_pose_known_rotation_error() -> None:
    # E_0 = I, so Rel_01 = E_1. Pred's rotation is off by 10 degrees about z,
    # translation identical -> rotation error 10, translation error 0.
    t = [1.0, 2.0, 3.0]
    gt = np.stack([np.eye(4), _pose(_rz(40.0), t)])
    pred = np.stack([np.eye(4), _pose(_rz(50.0), t)])
    rot, trans = pose_errors(pred, gt)
    assert rot[0] == pytest.approx(10.0, abs=1e-6)
    assert trans[0] == pytest.approx(0.0, abs=1e-6)
    # 10.5 degrees off (10 itself sits on a bin edge, where rounding decides):
    # e = 10.5 -> bin [10, 11): cumulative 0 for bins 0..9, 1 for 10..29 -> AUC = 20/30
    pred = np.stack([np.eye(4), _pose(_rz(50.5), t)])
    m = pose_metrics(pred, gt)
    assert m["AUC@30"] == pytest.approx(2 / 3)
    assert m["RRA@30"] == 1.0 and m["RTA@30"] == 1.0
    # 40 degrees off -> fails RRA, e = 40 > 30 -> AUC 0
    pred40 = np.stack([np.eye(4), _pose(_rz(80.0), t)])
    assert pose_metrics(pred40, gt) == {"AUC@30": 0.0, "RRA@30": 0.0, "RTA@30": 1.0}


@pytest.mark.parametrize(
    "t_pred,expected",
    [
        ([-1.0, 0.0, 0.0], 0.0),  # negated: theta = 180 -> min(180, 0) = 0
        ([5.0, 0.0, 0.0], 0.0),  # scale is irrelevant
        ([1.0, 1.0, 0.0], 45.0),
        ([-1.0, np.sqrt(3.0), 0.0], 60.0),  # theta = 120 -> min(120, 60) = 60
        ([0.0, 0.0, 1.0], 90.0),
        ([0.0, 0.0, 0.0], 90.0),  # no direction -> 90 by convention
    ],
)
def test_pose_translation_error(t_pred, expected) -> None:  # type: ignore[no-untyped-def]
    gt = np.stack([np.eye(4), _pose(np.eye(3), [1.0, 0.0, 0.0])])
    pred = np.stack([np.eye(4), _pose(np.eye(3), t_pred)])
    rot, trans = pose_errors(pred, gt)
    assert rot[0] == pytest.approx(0.0, abs=1e-6)
    assert trans[0] == pytest.approx(expected, abs=1e-9)


def test_pose_auc_hand_computed() -> None:
    # errors 0.5, 10.2, 45 over 3 pairs: bin 0 and bin 10 get 1/3 each, 45 only
    # counts in the denominator. Cumulative: bins 0..9 -> 1/3 (10 bins),
    # bins 10..29 -> 2/3 (20 bins). AUC = (10/3 + 40/3) / 30 = 5/9
    assert pose_auc([0.5, 10.2, 45.0]) == pytest.approx(5 / 9)
    # The reference variant (bin width 30/31): 0.5 -> bin 0, 10.2 * 31/30 = 10.54 -> bin 10,
    # so here it happens to agree.
    assert pose_auc_reference31([0.5, 10.2, 45.0]) == pytest.approx(5 / 9)
    # Exactly 30 falls in numpy's closed last bin [29, 30]: cumulative 1 in bin 29 only.
    assert pose_auc([30.0]) == pytest.approx(1 / 30)
    assert pose_auc([0.0, 0.0], max_threshold=5) == 1.0


def test_pose_auc_reference31_differs_from_standard() -> None:
    # 29.5: standard bin [29, 30] -> counted in the last cumulative value;
    # reference bin floor(29.5 * 31/30) = floor(30.48) = 30, the dropped 31st bin.
    # standard: bins 0..9 -> 1/3, 10..28 -> 2/3 (19 bins), 29 -> 1:
    #   (10/3 + 38/3 + 3/3) / 30 = 51/90 = 17/30
    # reference: bins 0..9 -> 1/3, 10..29 -> 2/3: (10/3 + 40/3) / 30 = 50/90 = 5/9
    errors = [0.5, 10.2, 29.5]
    assert pose_auc(errors) == pytest.approx(17 / 30)
    assert pose_auc_reference31(errors) == pytest.approx(5 / 9)
    # 0.98 degrees: standard bin 0, reference bin floor(0.98 * 31/30) = 1.
    # standard = 1 (all bins), reference = 29/30 (cumulative 0 in bin 0).
    assert pose_auc([0.98]) == 1.0
    assert pose_auc_reference31([0.98]) == pytest.approx(29 / 30)


def test_pose_metrics_invariances() -> None:
    gt = _random_poses(4, 12)
    # A perturbed prediction with non-trivial errors.
    rng = np.random.default_rng(12)
    noise = Rotation.from_rotvec(rng.normal(scale=0.2, size=(4, 3))).as_matrix()
    pred = gt.copy()
    pred[:, :3, :3] = noise @ gt[:, :3, :3]
    pred[:, :3, 3] += rng.normal(scale=0.3, size=(4, 3))
    ref_rot, ref_trans = pose_errors(pred, gt)
    assert ref_rot.max() > 1.0  # the case is not trivial

    # (1) Common left factor E -> W @ E: Rel = inv(E_i) inv(W) W E_j is unchanged.
    w = _pose(Rotation.random(random_state=13).as_matrix(), [3.0, -1.0, 2.0])
    rot, trans = pose_errors(w @ pred, w @ gt)
    np.testing.assert_allclose(rot, ref_rot, atol=1e-6)
    np.testing.assert_allclose(trans, ref_trans, atol=1e-8)
    # (2) Common world rotation E -> E @ W (W a rotation): Rel -> W^T Rel W, a
    #     conjugation that preserves both angles.
    w_rot = _pose(Rotation.random(random_state=14).as_matrix(), [0.0, 0.0, 0.0])
    rot, trans = pose_errors(pred @ w_rot, gt @ w_rot)
    np.testing.assert_allclose(rot, ref_rot, atol=1e-6)
    np.testing.assert_allclose(trans, ref_trans, atol=1e-8)
    # (3) Scaling the prediction's translations (world scale) changes no angle.
    scaled = pred.copy()
    scaled[:, :3, 3] *= 3.7
    rot, trans = pose_errors(scaled, gt)
    np.testing.assert_allclose(rot, ref_rot, atol=1e-6)
    np.testing.assert_allclose(trans, ref_trans, atol=1e-8)
    # (4) NOT invariant to a common world translation E -> E @ W: Rel's
    #     translation picks up (R_rel - I) t_W, which differs between pred and gt.
    w_trans = _pose(np.eye(3), [3.0, -1.0, 2.0])
    _, trans = pose_errors(pred @ w_trans, gt @ w_trans)
    assert not np.allclose(trans, ref_trans, atol=1e-3)


@pytest.mark.parametrize(
    "pred,gt,match",
    [
        (np.eye(4)[None], np.eye(4)[None], r"need >= 2 views \(S\), got S=1"),
        (np.stack([np.eye(4)] * 2), np.stack([np.eye(4)] * 3), "2 views but gt_extrinsics has 3"),
        (np.stack([np.eye(3)] * 2), np.stack([np.eye(3)] * 2), r"pred_extrinsics must have shape \(S, 3, 4\)"),
        (np.stack([np.eye(4)] * 2), np.stack([np.eye(4)[:, :3]] * 2), r"gt_extrinsics must have shape"),
        (np.stack([2 * np.eye(4)] * 2), np.stack([np.eye(4)] * 2), r"last row \[0, 0, 0, 1\]"),
        (np.stack([np.full((3, 4), np.nan)] * 2), np.stack([np.eye(4)] * 2), "finite"),
    ],
)
def test_pose_value_errors(pred, gt, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        pose_metrics(pred, gt)


@pytest.mark.parametrize(
    "errors,kwargs,match",
    [
        ([], {}, "non-empty 1-D"),
        ([[1.0]], {}, "non-empty 1-D"),
        ([1.0, np.nan], {}, "no NaN"),
        ([-1.0], {}, "non-negative"),
        ([1.0], {"max_threshold": 0}, "positive integer"),
        ([1.0], {"max_threshold": 2.5}, "positive integer"),
    ],
)
def test_pose_auc_value_errors(errors, kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        pose_auc(errors, **kwargs)
    if not kwargs:
        with pytest.raises(ValueError, match=match):
            pose_auc_reference31(errors)
