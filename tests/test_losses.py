"""Tests for probes.losses: hand-computed values on tiny tensors, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from probes.losses import asymmetric_loss, confidence_weighted_l1, pose_huber, pull_push_loss, weighted_l1

LN3 = math.log(3.0)
# sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
ASL_LOGITS = torch.tensor([[0.0, LN3], [-LN3, 0.0]], dtype=torch.float64)
ASL_TARGETS = torch.tensor([[1, 0], [0, 1]])


# --------------------------------------------------------------------------- #
# Asymmetric loss
# --------------------------------------------------------------------------- #
def test_asymmetric_loss_hand_computed_reference_settings() -> None:
    # gamma_neg 4, gamma_pos 0, clip 0:
    #   row 0: positive p=1/2 -> -log(1/2) = ln 2; negative p=3/4 -> -(3/4)^4 log(1/4) = 81/256 ln 4
    #   row 1: negative p=1/4 -> -(1/4)^4 log(3/4) = 1/256 ln(4/3); positive p=1/2 -> ln 2
    #   loss = mean over the 2 rows of the per-row sums
    expected = (math.log(2) + 81 / 256 * math.log(4) + 1 / 256 * math.log(4 / 3) + math.log(2)) / 2
    assert asymmetric_loss(ASL_LOGITS, ASL_TARGETS).item() == pytest.approx(expected)


def test_asymmetric_loss_hand_computed_clip_and_gamma_pos() -> None:
    # clip 0.05: p_m = 3/4 - 0.05 = 0.7 -> 0.7^4 * -log(0.3); p_m = 1/4 - 0.05 = 0.2 -> 0.2^4 * -log(0.8)
    # gamma_pos 1: positives weighted by (1 - p) = 1/2 -> 1/2 ln 2 each
    expected = (
        0.5 * math.log(2) + 0.7**4 * -math.log(0.3) + 0.2**4 * -math.log(0.8) + 0.5 * math.log(2)
    ) / 2
    got = asymmetric_loss(ASL_LOGITS, ASL_TARGETS, gamma_neg=4.0, gamma_pos=1.0, clip=0.05)
    assert got.item() == pytest.approx(expected)


def test_asymmetric_loss_clip_zeroes_easy_negatives() -> None:
    # p = 1/4 <= clip 0.3 -> p_m = 0 -> the negative term 0^4 * log(1) = 0.
    logits = torch.tensor([[-LN3]], dtype=torch.float64)
    assert asymmetric_loss(logits, torch.tensor([[0]]), clip=0.3).item() == 0.0


def test_asymmetric_loss_without_focusing_is_bce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 20, dtype=torch.float64) * 4
    targets = (torch.rand(6, 20) < 0.3).to(torch.int64)
    got = asymmetric_loss(logits, targets, gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    # BCE summed over classes, averaged over the batch.
    bce = F.binary_cross_entropy_with_logits(logits, targets.double(), reduction="sum") / 6
    assert got.item() == pytest.approx(bce.item())


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_asymmetric_loss_gradients_finite_for_saturated_logits(clip: float) -> None:
    logits = torch.tensor([[-200.0, -30.0, 0.0, 30.0, 200.0]] * 2, requires_grad=True)
    targets = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]])
    loss = asymmetric_loss(logits, targets, gamma_pos=1.0, clip=clip)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(torch.isfinite(logits.grad))


@pytest.mark.parametrize(
    "logits,targets,kwargs,match",
    [
        (torch.zeros(3), torch.zeros(3), {}, r"logits must have shape \(B, K\)"),
        (torch.zeros(2, 3), torch.zeros(2, 2), {}, r"targets shape \(2, 2\) does not match logits shape \(2, 3\)"),
        (torch.zeros(2, 3), torch.full((2, 3), 2.0), {}, "0/1"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"clip": 1.0}, r"clip must be in \[0, 1\)"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"gamma_neg": -1.0}, "must be >= 0"),
    ],
)
def test_asymmetric_loss_value_errors(logits, targets, kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        asymmetric_loss(logits, targets, **kwargs)


# --------------------------------------------------------------------------- #
# Pull / push
# --------------------------------------------------------------------------- #
def test_pull_push_hand_computed() -> None:
    # e0 = (0, 0), e1 = (0.6, 0) with id 0; e2 = (0, 0.8) with id 1.
    # pull: same-id pair (0, 1): d = 0.6 -> d^2 = 0.36 (both orders) -> mean 0.36
    # push: (0, 2): d = 0.8 -> relu(1 - 0.8)^2 = 0.04; (1, 2): d = sqrt(0.36 + 0.64) = 1 -> 0
    #       mean over the 2 unordered (4 ordered) pairs = 0.02
    # loss = 0.36 + 0.02 = 0.38
    emb = torch.tensor([[0.0, 0.0], [0.6, 0.0], [0.0, 0.8]], dtype=torch.float64)
    ids = torch.tensor([0, 0, 1])
    assert pull_push_loss(emb, ids).item() == pytest.approx(0.38)
    # margin 2: push (0, 2) -> 1.2^2 = 1.44, (1, 2) -> 1^2 = 1 -> mean 1.22 -> loss 1.58
    assert pull_push_loss(emb, ids, margin=2.0).item() == pytest.approx(1.58)


def test_pull_push_zero_for_separated_identical_clusters() -> None:
    # Two clusters of identical embeddings at distance 2 >= margin 1 -> 0, with finite
    # (zero) gradients even at the zero within-cluster distances.
    emb = torch.tensor([[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 2, requires_grad=True)
    ids = torch.tensor([4, 4, 4, 9, 9])
    loss = pull_push_loss(emb, ids)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(torch.isfinite(emb.grad))


def test_pull_push_missing_terms_contribute_zero() -> None:
    emb = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    # One id: no push pair -> pull only: 0.5^2 = 0.25
    assert pull_push_loss(emb, torch.tensor([1, 1])).item() == pytest.approx(0.25)
    # Distinct ids: no pull pair -> push only: relu(1 - 0.5)^2 = 0.25
    assert pull_push_loss(emb, torch.tensor([1, 2])).item() == pytest.approx(0.25)
    # A single pixel: no pair at all.
    assert pull_push_loss(emb[:1], torch.tensor([1])).item() == 0.0


def test_pull_push_gradients_finite_on_normalised_embeddings() -> None:
    torch.manual_seed(1)
    raw = torch.randn(64, 32, requires_grad=True)
    ids = torch.randint(0, 5, (64,))
    loss = pull_push_loss(F.normalize(raw, dim=1), ids)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(raw.grad))


@pytest.mark.parametrize(
    "emb,ids,margin,match",
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), 1.0, r"embeddings must have shape \(P, E\)"),
        (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), 1.0, r"ids must have shape \(4,\)"),
        (torch.zeros(4, 2), torch.zeros(4), 1.0, "integer tensor"),
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 0.0, "margin must be > 0"),
    ],
)
def test_pull_push_value_errors(emb, ids, margin, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        pull_push_loss(emb, ids, margin=margin)


# --------------------------------------------------------------------------- #
# Confidence-weighted and weighted L1
# --------------------------------------------------------------------------- #
def test_confidence_weighted_l1_hand_computed_with_channels() -> None:
    # err = L1 over the channel dim: |1 - 0| + |2 - 0| = 3 ; |0 - 3| + |0 - 4| = 7 ; third invalid
    # conf [1, 2]: (1 * 3 - 0.05 ln 1) and (2 * 7 - 0.05 ln 2) -> mean = (17 - 0.05 ln 2) / 2
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    conf = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)
    valid = torch.tensor([True, True, False])
    got = confidence_weighted_l1(pred, target, conf, valid)
    assert got.item() == pytest.approx((17 - 0.05 * math.log(2)) / 2)


def test_confidence_weighted_l1_without_channels_and_gradients() -> None:
    # err [0.5, 1.5], conf [2, 4], alpha 0.1: (2 * 0.5 - 0.1 ln 2 + 4 * 1.5 - 0.1 ln 4) / 2
    #   = (7 - 0.1 ln 8) / 2
    pred = torch.tensor([[1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    conf = torch.tensor([[2.0, 4.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.5, 1.5]], dtype=torch.float64)
    loss = confidence_weighted_l1(pred, target, conf, torch.ones(1, 2, dtype=torch.bool), alpha=0.1)
    assert loss.item() == pytest.approx((7 - 0.1 * math.log(8)) / 2)
    loss.backward()
    # d/dconf (c * err - alpha ln c) / 2 = (err - alpha / c) / 2 -> (0.5 - 0.05) / 2, (1.5 - 0.025) / 2
    torch.testing.assert_close(conf.grad, torch.tensor([[0.225, 0.7375]], dtype=torch.float64))
    assert torch.all(torch.isfinite(pred.grad))


def test_weighted_l1_hand_computed() -> None:
    # err (L1 over channels) [3, 7, 100 (invalid)], weight [1, 3, 1] -> (3 + 21) / (1 + 3) = 6
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [50.0, 50.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    weight = torch.tensor([1.0, 3.0, 1.0])
    valid = torch.tensor([True, True, False])
    assert weighted_l1(pred, target, weight, valid).item() == pytest.approx(6.0)
    assert weighted_l1(target, target, weight, valid).item() == 0.0


@pytest.mark.parametrize(
    "pred,target,w,valid,match",
    [
        (torch.zeros(3, 2), torch.zeros(3, 3), torch.ones(3), torch.ones(3, dtype=torch.bool), "target shape"),
        (torch.zeros(3, 2, 2), torch.zeros(3, 2, 2), torch.ones(3), torch.ones(3, dtype=torch.bool),
         "extend it by one channel dim"),
        (torch.zeros(3), torch.zeros(3), torch.ones(3), torch.ones(3), "valid must be a bool tensor"),
        (torch.zeros(3), torch.zeros(3), torch.ones(3), torch.ones(2, dtype=torch.bool), "valid shape"),
        (torch.zeros(3), torch.zeros(3), torch.ones(3), torch.zeros(3, dtype=torch.bool), "no element"),
    ],
)
def test_l1_shape_errors(pred, target, w, valid, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        confidence_weighted_l1(pred, target, w, valid)
    with pytest.raises(ValueError, match=match):
        weighted_l1(pred, target, w, valid)


def test_l1_value_errors() -> None:
    ones = torch.ones(3)
    valid = torch.ones(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="conf must be > 0"):
        confidence_weighted_l1(ones, ones, torch.tensor([1.0, 0.0, 1.0]), valid)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        weighted_l1(ones, ones, torch.tensor([1.0, -1.0, 1.0]), valid)
    with pytest.raises(ValueError, match="weight sums to 0"):
        weighted_l1(ones, ones, torch.zeros(3), valid)


# --------------------------------------------------------------------------- #
# Pose Huber
# --------------------------------------------------------------------------- #
def test_pose_huber_hand_computed() -> None:
    # One entry off by 0.5 (quadratic: 0.5 * 0.25 = 0.125), one by -2 (linear:
    # 1 * (2 - 0.5) = 1.5), 16 exact; mean over 2 * 1 * 9 = 18 entries -> 1.625 / 18
    target = torch.zeros(2, 1, 9)
    pred = target.clone()
    pred[0, 0, 3] = 0.5
    pred[1, 0, 8] = -2.0
    assert pose_huber(pred, target).item() == pytest.approx(1.625 / 18)
    assert pose_huber(target, target).item() == 0.0
    # delta 3: both quadratic -> (0.125 + 2) / 18
    assert pose_huber(pred, target, delta=3.0).item() == pytest.approx(2.125 / 18)


@pytest.mark.parametrize(
    "pred,target,delta,match",
    [
        (torch.zeros(2, 9), torch.zeros(2, 9), 1.0, r"pred must have shape \(B, S, 9\)"),
        (torch.zeros(2, 3, 8), torch.zeros(2, 3, 8), 1.0, r"pred must have shape \(B, S, 9\)"),
        (torch.zeros(2, 3, 9), torch.zeros(2, 4, 9), 1.0, "target shape"),
        (torch.zeros(2, 3, 9), torch.zeros(2, 3, 9), 0.0, "delta must be > 0"),
    ],
)
def test_pose_huber_value_errors(pred, target, delta, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        pose_huber(pred, target, delta)
