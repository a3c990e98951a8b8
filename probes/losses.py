"""Training losses of the paper-preset probe heads (torch).

Every function returns a 0-dim tensor that keeps the autograd graph. Shape and
value checks raise ``ValueError``; the value checks (``conf > 0``, a non-empty
``valid``) read tensor contents and so synchronise with the device once per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["asymmetric_loss", "confidence_weighted_l1", "pose_huber", "pull_push_loss", "weighted_l1"]


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} shape {tuple(b.shape)} does not match {name_a} shape {tuple(a.shape)}")


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021).

    With ``p = sigmoid(logits)`` and the shifted probability
    ``p_m = max(p - clip, 0)``, per sample ``b`` and class ``k``::

        L_bk = -y * (1 - p)^gamma_pos * log(p)
               - (1 - y) * p_m^gamma_neg * log(1 - p_m)

    and the loss is ``sum_k L_bk`` averaged over the batch (the paper's code
    sums over the batch too; the mean keeps the scale independent of B). The
    focusing weights keep their gradient, as in the paper's default. With
    ``clip == 0`` both logs are computed as ``logsigmoid(+-logits)``; with
    ``clip > 0`` the negative log is ``log(max(1 - p_m, eps))``.

    Args:
        logits: (B, K) raw scores.
        targets: (B, K) labels in {0, 1}.
        gamma_neg: focusing exponent of the negatives (reference: 4).
        gamma_pos: focusing exponent of the positives (reference: 0).
        clip: probability margin ``m`` of the negatives, in [0, 1) (reference: 0).
        eps: lower bound inside the clipped negative log.

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: on non-2-D or mismatched shapes, targets outside {0, 1},
            negative gammas or ``clip`` outside [0, 1).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, K), got shape {tuple(logits.shape)}")
    _check_same_shape("logits", logits, "targets", targets)
    if gamma_neg < 0 or gamma_pos < 0:
        raise ValueError(f"gamma_neg and gamma_pos must be >= 0, got {gamma_neg} and {gamma_pos}")
    if not 0.0 <= clip < 1.0:
        raise ValueError(f"clip must be in [0, 1), got {clip}")
    y = targets.to(logits.dtype)
    if not torch.all((y == 0) | (y == 1)):
        raise ValueError("targets must contain only 0/1 labels")

    log_p = F.logsigmoid(logits)
    pos = log_p
    if gamma_pos > 0:
        # Python-float exponents: torch's pow backward is exactly 0 for exponent 0.
        pos = pos * torch.sigmoid(-logits).pow(gamma_pos)
    p = torch.sigmoid(logits)
    if clip > 0:
        p_m = (p - clip).clamp(min=0.0)
        log_not_p_m = torch.log((1.0 - p_m).clamp(min=eps))
    else:
        p_m = p
        log_not_p_m = F.logsigmoid(-logits)
    neg = log_not_p_m * p_m.pow(gamma_neg) if gamma_neg > 0 else log_not_p_m
    per_cell = y * pos + (1.0 - y) * neg
    return -per_cell.sum(dim=1).mean()


def pull_push_loss(embeddings: torch.Tensor, ids: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Multi-view contrastive loss over the sampled pixels of one sample.

    With ``d_ij = ||e_i - e_j||_2`` over all ordered pairs ``i != j``::

        pull = mean over pairs with ids_i == ids_j of d_ij^2
        push = mean over pairs with ids_i != ids_j of relu(margin - d_ij)^2
        loss = pull + push

    A term without any pair is 0. Ordered and unordered pairs give the same
    means (``d`` is symmetric). The caller L2-normalises the embeddings.

    Args:
        embeddings: (P, E) pixel embeddings.
        ids: (P,) integer instance ids (view-consistent).
        margin: push distance, > 0 (reference: 1.0).

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: on shapes other than (P, E) / (P,), non-integer ids or a
            non-positive margin.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (P, E), got shape {tuple(embeddings.shape)}")
    if ids.shape != embeddings.shape[:1]:
        raise ValueError(f"ids must have shape ({embeddings.shape[0]},), got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")

    # Direct (non-matmul) distances: exact zeros for identical embeddings, and
    # cdist's backward is defined as 0 at zero distance.
    dist = torch.cdist(embeddings[None], embeddings[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
    same = ids[:, None] == ids[None, :]
    off_diag = ~torch.eye(ids.shape[0], dtype=torch.bool, device=ids.device)
    pull_pairs = same & off_diag
    push_pairs = ~same
    pull = (dist.square() * pull_pairs).sum() / pull_pairs.sum().clamp(min=1)
    push = (F.relu(margin - dist).square() * push_pairs).sum() / push_pairs.sum().clamp(min=1)
    return pull + push


def _abs_error(pred: torch.Tensor, target: torch.Tensor, ref_shape: torch.Size) -> torch.Tensor:
    """|pred - target|, summed over a trailing channel dim when pred has one beyond ``ref_shape``."""
    _check_same_shape("pred", pred, "target", target)
    err = (pred - target).abs()
    if pred.shape == ref_shape:
        return err
    if pred.shape[:-1] == ref_shape:
        return err.sum(dim=-1)
    raise ValueError(
        f"pred shape {tuple(pred.shape)} must equal the weight shape {tuple(ref_shape)} "
        f"or extend it by one channel dim"
    )


def _bool_valid(valid: torch.Tensor, ref_shape: torch.Size) -> torch.Tensor:
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor, got dtype {valid.dtype}")
    if valid.shape != ref_shape:
        raise ValueError(f"valid shape {tuple(valid.shape)} does not match {tuple(ref_shape)}")
    if not valid.any():
        raise ValueError("valid selects no element")
    return valid


def confidence_weighted_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    conf: torch.Tensor,
    valid: torch.Tensor,
    alpha: float = 0.05,
) -> torch.Tensor:
    """VGGT-style aleatoric L1: ``mean over valid of (conf * err - alpha * log(conf))``.

    ``err = |pred - target|`` when ``pred`` has ``conf``'s shape (e.g. depth
    (B, S, H, W)), or ``sum_d |pred_d - target_d|`` (L1 over the channel dim)
    when ``pred`` is ``conf``'s shape plus a trailing dim (e.g. points
    (B, S, H, W, 3)). The log term keeps the predicted confidence from
    collapsing to 0.

    Args:
        pred: (...) or (..., D) prediction.
        target: same shape as ``pred``.
        conf: (...) predicted confidence, > 0 on valid elements.
        valid: (...) bool mask with at least one True.
        alpha: weight of the ``-log(conf)`` regulariser.

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: on mismatched shapes, a non-bool or empty ``valid``, or
            ``conf <= 0`` on a valid element.
    """
    err = _abs_error(pred, target, conf.shape)
    mask = _bool_valid(valid, conf.shape)
    c = conf[mask]
    if not torch.all(c > 0):
        raise ValueError("conf must be > 0 on valid elements")
    return (c * err[mask] - alpha * torch.log(c)).mean()


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``sum(weight * err) / sum(weight)`` over valid elements (no predicted confidence).

    ``err`` is as in :func:`confidence_weighted_l1` (L1 summed over a trailing
    channel dim when ``pred`` has one beyond ``weight``'s shape).

    Args:
        pred: (...) or (..., D) prediction.
        target: same shape as ``pred``.
        weight: (...) non-negative weights (e.g. the ground-truth confidence).
        valid: (...) bool mask with at least one True.

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: on mismatched shapes, a non-bool or empty ``valid``,
            negative weights or a zero weight sum over ``valid``.
    """
    err = _abs_error(pred, target, weight.shape)
    mask = _bool_valid(valid, weight.shape)
    w = weight[mask]
    if torch.any(w < 0):
        raise ValueError("weight must be >= 0")
    total = w.sum()
    if not total > 0:
        raise ValueError("weight sums to 0 over the valid elements")
    return (w * err[mask]).sum() / total


def pose_huber(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Mean Huber loss over all entries of the 9-number pose encodings.

    ``torch.nn.functional.huber_loss(pred, target, delta=delta)`` with the mean
    reduction: per entry ``0.5 x^2`` for ``|x| <= delta`` else
    ``delta (|x| - 0.5 delta)``, ``x = pred - target``.

    Args:
        pred: (B, S, 9) predicted encodings (see :mod:`probes.camera`).
        target: (B, S, 9) target encodings.
        delta: Huber threshold, > 0.

    Returns:
        0-dim loss tensor.

    Raises:
        ValueError: on shapes other than (B, S, 9), mismatched shapes or
            ``delta <= 0``.
    """
    if pred.ndim != 3 or pred.shape[-1] != 9:
        raise ValueError(f"pred must have shape (B, S, 9), got shape {tuple(pred.shape)}")
    _check_same_shape("pred", pred, "target", target)
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    return F.huber_loss(pred, target, reduction="mean", delta=delta)
