"""Semantic tagging: which classes appear in a sample of views (multi-label).

Labels are those of the sampled views, as in the paper: class c is positive when its pixel count summed over
the views reaches ``min_pixels`` and it is present in at least ``min_frames`` of them (docs/tasks.md).
``linear``: features averaged over views and grid cells, one logistic regression per class on standardised
features. ``light`` / ``paper``: a torch net trained with the asymmetric loss. All kinds are scored with
:func:`probes.metrics.tagging_metrics`, head/mid/tail buckets from the training samples' positive rates, plus
``Mid Ratio`` = AP_mid / mAP (how much of the score survives on mid-frequency classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipstore import ClipStore
from probes.bootstrap import weighted_tagging_metrics
from probes.data import Sample, SampleReader
from probes.metrics import tagging_metrics
from probes.netconfig import LIGHT_COMMON, PAPER_COMMON
from probes.result import ClipStats, Evaluation
from probes.taskspec import NetKind, TaskSpec

if TYPE_CHECKING:  # torch loads only in the jobs that train a torch probe
    import torch

METRICS = {"mAP": True, "AP_head": True, "AP_mid": True, "AP_tail": True, "Mid Ratio": True, "OF1": True,
           "CF1": True}


def tag_labels(tag_counts: np.ndarray, min_pixels: int, min_frames: int) -> np.ndarray:
    """(..., C) 0/1 labels from (..., views, C) per-frame class pixel counts."""
    pixels = tag_counts.sum(axis=-2)
    frames_present = (tag_counts > 0).sum(axis=-2)
    return ((pixels >= min_pixels) & (frames_present >= min_frames)).astype(np.int8)


def make_targets(options: dict[str, Any]):
    def targets(clips_store: ClipStore, sample: Sample) -> dict[str, np.ndarray]:
        counts = clips_store.select("tag_counts", [sample.clip], sample.views)[0]
        return {"labels": tag_labels(counts, options["min_pixels"], options["min_frames"])}
    return targets


def loss_fn(settings: dict[str, Any]):
    from probes.losses import asymmetric_loss

    def loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], _: torch.Generator) -> torch.Tensor:
        return asymmetric_loss(outputs["logits"], targets["labels"].float(), gamma_neg=settings["gamma_neg"],
                               gamma_pos=settings["gamma_pos"], clip=settings["clip"])
    return loss


def labels_of(reader: SampleReader, samples: Sequence[Sample]) -> np.ndarray:
    return np.stack([reader.targets(s)["labels"] for s in samples])


def with_mid_ratio(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` plus ``Mid Ratio`` = AP_mid / mAP (floats, or arrays of resamples)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(metrics["AP_mid"], metrics["mAP"])
    return {**metrics, "Mid Ratio": float(ratio) if np.ndim(ratio) == 0 else ratio}


def evaluate(scores: np.ndarray, reader: SampleReader, val: Sequence[Sample], train: Sequence[Sample],
             options: dict[str, Any]) -> Evaluation:
    y_val, y_train = labels_of(reader, val), labels_of(reader, train)
    train_rate = y_train.mean(axis=0)
    metrics = with_mid_ratio(tagging_metrics(y_val, scores, train_pos_rate=train_rate))
    stats = ClipStats(np.array([s.clip for s in val]), {"labels": y_val, "scores": scores.astype(np.float64)},
                      {"train_pos_rate": train_rate})
    return Evaluation(metrics, stats, {"scores": scores.astype(np.float32), "labels": y_val},
                      {"train_positive_rate": train_rate.round(3).tolist(),
                       "val_positive_rate": y_val.mean(axis=0).round(3).tolist()})


def resample_metrics(stats: ClipStats, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric on each resample of the validation clips (rows of ``weights``)."""
    return with_mid_ratio(weighted_tagging_metrics(stats.values["labels"], stats.values["scores"], weights,
                                                   stats.context["train_pos_rate"]))


def net_predictions(outputs: list[dict[str, np.ndarray]], reader: SampleReader,
                    samples: Sequence[Sample]) -> np.ndarray:
    """Probabilities from the nets' logits."""
    return 1.0 / (1.0 + np.exp(-np.stack([o["logits"] for o in outputs]).astype(np.float64)))


def fit_linear(reader: SampleReader, train: Sequence[Sample], val: Sequence[Sample], settings: dict[str, Any],
               seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(validation probabilities, weights, info) of one logistic regression per class on pooled features."""
    x_train = np.stack([reader.features(s).mean(axis=(0, 1, 2)) for s in train])
    x_val = np.stack([reader.features(s).mean(axis=(0, 1, 2)) for s in val])
    y_train = labels_of(reader, train)
    scores = np.empty((len(val), y_train.shape[1]))
    coef = np.zeros((y_train.shape[1], x_train.shape[1]), dtype=np.float32)
    intercept = np.zeros(y_train.shape[1], dtype=np.float32)
    constant = []
    for c in range(y_train.shape[1]):
        if y_train[:, c].min() == y_train[:, c].max():
            scores[:, c] = y_train[:, c].mean()  # one label only in training: predict the training rate
            constant.append(c)
            continue
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=settings["C"], max_iter=settings["max_iter"]))
        model.fit(x_train, y_train[:, c])
        scores[:, c] = model.predict_proba(x_val)[:, 1]
        scaler, logistic = model[0], model[-1]
        coef[c] = logistic.coef_[0] / scaler.scale_
        intercept[c] = logistic.intercept_[0] - float(coef[c] @ scaler.mean_)
    # weights act on raw pooled features: p = sigmoid(x @ coef.T + intercept)
    return scores, {"coef": coef, "intercept": intercept}, {"constant_classes": constant}


def net_arguments(clips_store: ClipStore) -> dict[str, Any]:
    return {"num_classes": len(clips_store.class_names)}


SPEC = TaskSpec(
    name="tagging", views=8, required_arrays=("tag_counts",),
    options={"min_pixels": 200, "min_frames": 1},
    linear={"C": 1.0, "max_iter": 2000, "draws_per_clip": 4},
    training={"epochs": 10, "batch_size": 8, "lr": 3e-4, "weight_decay": 0.05, "warmup_epochs": 1, "patience": 3,
              "draws_per_clip": 1, "device": "auto", "gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.0},
    nets={
        # the reference recipe suits the 22M-parameter paper net; a light head on few clips needs larger steps
        "light": NetKind("probes.nets:LightTagging", dict(LIGHT_COMMON),
                         training={"lr": 1e-3, "epochs": 30, "patience": 8}),
        "paper": NetKind("probes.paper:PaperTagging", {**PAPER_COMMON, "dim": 512, "depth": 2, "decoder_layers": 2}),
    },
    metrics=METRICS, headline=("AP_mid", "mAP", "Mid Ratio"), percent=("AP_mid", "mAP"),
    make_targets=make_targets, fit_linear=fit_linear, loss_fn=loss_fn, net_predictions=net_predictions,
    evaluate=evaluate, resample_metrics=resample_metrics, net_arguments=net_arguments,
)
