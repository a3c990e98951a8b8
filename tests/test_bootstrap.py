"""Tests for probes.bootstrap: weighted metrics equal the plain ones on resampled rows."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from probes.bootstrap import (
    TAGGING_KEYS,
    percentile_interval,
    resample_weights,
    weighted_average_precision,
    weighted_nanmean,
    weighted_tagging_metrics,
)
from probes.metrics import tagging_metrics


def _explicit_resamples(n: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index draws (resamples, n) and their bincount weights."""
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    weights = np.stack([np.bincount(row, minlength=n) for row in idx])
    return idx, weights


# --------------------------------------------------------------------------- #
# resample_weights
# --------------------------------------------------------------------------- #
def test_weights_deterministic_and_rows_sum_to_n() -> None:
    w1 = resample_weights(37, 200, seed=3)
    w2 = resample_weights(37, 200, seed=3)
    assert w1.shape == (200, 37) and w1.dtype == np.int64
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(w1.sum(axis=1), np.full(200, 37))
    assert np.all(w1 >= 0)
    assert not np.array_equal(w1, resample_weights(37, 200, seed=4))


def test_weights_are_bincounts_of_rng_draws() -> None:
    _, expected = _explicit_resamples(15, 30, seed=11)
    np.testing.assert_array_equal(resample_weights(15, 30, seed=11), expected)


@pytest.mark.parametrize(("n", "resamples"), [(0, 5), (5, 0), (-1, 3)])
def test_weights_reject_empty(n: int, resamples: int) -> None:
    with pytest.raises(ValueError):
        resample_weights(n, resamples, seed=0)


# --------------------------------------------------------------------------- #
# weighted_average_precision
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(("n", "b"), [(1, 4), (7, 30), (40, 25), (200, 10)])
def test_weighted_ap_matches_sklearn(n: int, b: int) -> None:
    rng = np.random.default_rng(n * 100 + b)
    labels = (rng.random(n) < 0.3).astype(int)
    # Few distinct score values: heavy ties, including ties between positives and negatives.
    scores = rng.integers(0, 5, size=n) / 4.0
    weights = rng.integers(0, 4, size=(b, n)).astype(np.float64)
    weights[0] = 0.0  # no weight at all
    weights[1 % b, labels == 1] = 0.0  # no weighted positive
    if b > 2:
        weights[2] = rng.random(n) * (rng.random(n) < 0.6)  # real-valued weights with zeros
    got = weighted_average_precision(labels, scores, weights)
    assert got.shape == (b,) and got.dtype == np.float64
    for row, value in zip(weights, got):
        if np.sum(row * labels) == 0:
            assert math.isnan(value)
            continue
        expected = average_precision_score(labels, scores, sample_weight=row)
        assert value == pytest.approx(expected, abs=1e-12)


def test_weighted_ap_continuous_scores_and_resamples() -> None:
    rng = np.random.default_rng(5)
    labels = (rng.random(60) < 0.5).astype(int)
    scores = rng.random(60)
    idx, weights = _explicit_resamples(60, 40, seed=6)
    got = weighted_average_precision(labels, scores, weights)
    for row, value in zip(idx, got):
        expected = average_precision_score(labels[row], scores[row])
        assert value == pytest.approx(expected, abs=1e-12)


def test_weighted_ap_rejects_negative_weights() -> None:
    with pytest.raises(ValueError):
        weighted_average_precision([0, 1], [0.1, 0.9], [[1.0, -1.0]])


# --------------------------------------------------------------------------- #
# weighted_tagging_metrics
# --------------------------------------------------------------------------- #
def _tagging_data(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.6, 0.05, c)
    labels = (rng.random((n, c)) < rates).astype(int)
    # Class 0 has a single positive, so many resamples miss it.
    labels[:, 0] = 0
    labels[0, 0] = 1
    # Rounded scores: ties, and some exactly at the F1 threshold.
    scores = np.round(np.clip(0.4 * labels + 0.6 * rng.random((n, c)), 0.0, 1.0), 1)
    train_rate = rng.random(c)
    return labels, scores, train_rate


def _assert_metrics_equal(got: dict[str, float], expected: dict[str, float]) -> None:
    for key in TAGGING_KEYS:
        if math.isnan(expected[key]):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(expected[key], abs=1e-12), key


@pytest.mark.parametrize(("n", "c"), [(12, 6), (40, 20)])
def test_weighted_tagging_matches_resampled_rows(n: int, c: int) -> None:
    labels, scores, train_rate = _tagging_data(n, c, seed=c)
    idx, weights = _explicit_resamples(n, 50, seed=n)
    got = weighted_tagging_metrics(labels, scores, weights, train_rate)
    assert set(got) == set(TAGGING_KEYS)
    assert all(v.shape == (50,) for v in got.values())
    missing_class_0 = 0
    for b, row in enumerate(idx):
        missing_class_0 += int(labels[row, 0].sum() == 0)
        expected = tagging_metrics(labels[row], scores[row], train_rate)
        _assert_metrics_equal({k: float(v[b]) for k, v in got.items()}, expected)
    assert 0 < missing_class_0 < 50  # the absent-class path was exercised


def test_weighted_tagging_all_ones_is_full_data() -> None:
    labels, scores, train_rate = _tagging_data(30, 20, seed=1)
    got = weighted_tagging_metrics(labels, scores, np.ones((3, 30)), train_rate)
    expected = tagging_metrics(labels, scores, train_rate)
    for b in range(3):
        _assert_metrics_equal({k: float(v[b]) for k, v in got.items()}, expected)


def test_weighted_tagging_no_positive_is_nan() -> None:
    labels = np.array([[1, 0], [0, 0], [0, 1]])
    scores = np.array([[0.9, 0.2], [0.6, 0.1], [0.3, 0.7]])
    weights = np.array([[0, 3, 0], [1, 1, 1]])
    got = weighted_tagging_metrics(labels, scores, weights, np.array([0.5, 0.2]))
    for key in TAGGING_KEYS:
        assert math.isnan(got[key][0]), key
    _assert_metrics_equal(
        {k: float(v[1]) for k, v in got.items()},
        tagging_metrics(labels, scores, np.array([0.5, 0.2])),
    )


# --------------------------------------------------------------------------- #
# weighted_nanmean
# --------------------------------------------------------------------------- #
def test_weighted_nanmean_matches_resampled_nanmean() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=25)
    values[[3, 7, 8]] = np.nan
    idx, weights = _explicit_resamples(25, 60, seed=9)
    got = weighted_nanmean(values, weights)
    for row, value in zip(idx, got):
        assert value == pytest.approx(np.nanmean(values[row]), abs=1e-12)


def test_weighted_nanmean_nan_without_finite_weight() -> None:
    values = np.array([np.nan, 1.0, 3.0])
    got = weighted_nanmean(values, np.array([[2, 0, 0], [0, 1, 3]]))
    assert math.isnan(got[0])
    assert got[1] == pytest.approx(2.5)


# --------------------------------------------------------------------------- #
# percentile_interval
# --------------------------------------------------------------------------- #
def _mean_interval(n: int, seed: int) -> tuple[float, float, float]:
    values = np.random.default_rng(seed).normal(size=n)
    lower, upper = percentile_interval(weighted_nanmean(values, resample_weights(n, 1000, seed)))
    return lower, upper, float(values.mean())


def test_interval_contains_mean_and_shrinks_with_n() -> None:
    lo_small, hi_small, mean_small = _mean_interval(20, seed=0)
    lo_big, hi_big, mean_big = _mean_interval(500, seed=1)
    assert lo_small < mean_small < hi_small
    assert lo_big < mean_big < hi_big
    # Width ~ 2 * 1.96 / sqrt(n): the ratio should be near sqrt(500 / 20) = 5.
    ratio = (hi_small - lo_small) / (hi_big - lo_big)
    assert 3.0 < ratio < 8.0
    assert hi_big - lo_big == pytest.approx(2 * 1.96 / math.sqrt(500), rel=0.25)


def test_interval_averages_seeds_first() -> None:
    rng = np.random.default_rng(3)
    per_seed = rng.normal(size=(3, 400))
    per_seed[1, :50] = np.nan  # a seed without a score on some resamples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        averaged = np.nanmean(per_seed, axis=0)
    assert percentile_interval(per_seed, 0.9) == pytest.approx(
        tuple(np.nanpercentile(averaged, [5.0, 95.0]))
    )
    # Averaging first narrows the interval compared with pooling the seeds.
    lower, upper = percentile_interval(per_seed)
    pooled_lower, pooled_upper = percentile_interval(per_seed.ravel())
    assert upper - lower < pooled_upper - pooled_lower


def test_interval_all_nan_and_bad_level() -> None:
    lower, upper = percentile_interval(np.full(10, np.nan))
    assert math.isnan(lower) and math.isnan(upper)
    lower, upper = percentile_interval(np.full((2, 10), np.nan))
    assert math.isnan(lower) and math.isnan(upper)
    for level in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            percentile_interval(np.arange(10.0), level)
