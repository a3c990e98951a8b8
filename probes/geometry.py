"""3-D geometry: depth, point map and relative camera pose of a sample of views (docs/tasks.md).

Targets are normalised per sample as in the reference: everything in view 0's camera frame, scaled so the mean
point norm of view 0's valid pixels is 1 (depth, points and camera translations alike).

``linear``: one ridge regression (scikit-learn, on standardised features) from each token to the log depth and
the point of its cell, and one from a view's pooled features next to view 0's to the view's relative pose
``[R | t]`` (12 numbers, R projected onto a rotation). ``light`` / ``paper``: torch nets trained with
confidence-weighted L1 on depth and points plus Huber on VGGT's camera encoding.

Scores: AbsRel and delta1 (median-scaled) and the P-map error (similarity fitted on the reliability mask) per
sample, averaged; RRA@30, RTA@30 and AUC@30 over the view pairs of all samples pooled. The reference code's
31-bin AUC is recorded in ``info`` as ``AUC@30_reference31``, never as AUC@30.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipstore import ClipStore
from clipstore.grid import resample
from probes.camera import decode_pose_encoding, first_view_frame, nearest_rotation, pose_encoding
from probes.data import Sample, SampleReader
from probes.metrics import (POSE_THRESHOLD_DEG, depth_metrics, pointmap_error, pose_auc, pose_auc_from_histogram,
                            pose_auc_reference31, pose_error_histogram, pose_errors, reliability_mask)
from probes.netconfig import LIGHT_COMMON, PAPER_COMMON
from probes.result import ClipStats, Evaluation
from probes.taskspec import NetKind, TaskSpec

if TYPE_CHECKING:  # torch loads only in the jobs that train a torch probe
    import torch

REQUIRED_ARRAYS = ("depth", "points", "confidence", "extrinsics", "intrinsics")
METRICS = {"AbsRel": False, "delta1": True, "P-map": False, "AUC@30": True, "RRA@30": True, "RTA@30": True}
PER_SAMPLE = ("AbsRel", "delta1", "P-map")  # averaged over samples; the pose metrics pool view pairs


class GeometryError(ValueError):
    """Ground truth that cannot be normalised (e.g. no valid depth in the reference view)."""


def make_targets(options: dict[str, Any]):
    return targets


def targets(clips_store: ClipStore, sample: Sample) -> dict[str, np.ndarray]:
    """Depth, points, pose and masks of one sample, in view 0's camera frame, scale-normalised."""
    read = {name: clips_store.select(name, [sample.clip], sample.views)[0].astype(np.float64)
            for name in REQUIRED_ARRAYS}
    try:
        frame = first_view_frame(read["depth"], read["points"], read["extrinsics"])
    except ValueError as err:
        raise GeometryError(f"clip {sample.clip}, frame {int(sample.views[0])}: {err}") from None
    valid, size = frame.valid, read["depth"].shape[1:]
    return {"depth": np.where(valid, read["depth"] / frame.scale, 0.0).astype(np.float32),
            "points": np.where(valid[..., None], frame.points, 0.0).astype(np.float32),
            "confidence": np.where(valid, read["confidence"], 0.0).astype(np.float32),
            "valid": valid, "extrinsics": frame.extrinsics.astype(np.float32),
            "pose": pose_encoding(frame.extrinsics, read["intrinsics"], size).astype(np.float32),
            "scale": np.float32(frame.scale)}


def _to_size(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (S, h, w, ...) maps to (S, H, W, ...)."""
    return maps if maps.shape[1:3] == tuple(size) else resample(maps, size, axes=(1, 2), method="bilinear")


def evaluate(predictions: Sequence[dict[str, np.ndarray]], reader: SampleReader, val: Sequence[Sample],
             train: Sequence[Sample], options: dict[str, Any]) -> Evaluation:
    """Scores of per-sample predictions ``{"depth": (S, h, w), "points": (S, h, w, 3), "extrinsics":
    (S, 3, 4)}`` at any grid (resized bilinearly to the ground truth)."""
    per_clip: dict[str, list[Any]] = {key: [] for key in (*PER_SAMPLE, "rotation", "translation")}
    for prediction, sample in zip(predictions, val, strict=True):
        truth = reader.targets(sample)
        size = truth["depth"].shape[1:]
        mask = reliability_mask(truth["confidence"], truth["valid"])
        depth = depth_metrics(_to_size(prediction["depth"], size), truth["depth"], mask)
        points = _to_size(prediction["points"], size)
        scores = {**depth, "P-map": pointmap_error(points, truth["points"], truth["confidence"], mask)}
        rotation, translation = pose_errors(prediction["extrinsics"], truth["extrinsics"])
        for key, value in {**scores, "rotation": rotation, "translation": translation}.items():
            if key in per_clip:
                per_clip[key].append(value)
    stats = ClipStats(np.array([s.clip for s in val]), {key: np.stack(v) for key, v in per_clip.items()})
    worst = np.maximum(stats.values["rotation"], stats.values["translation"]).ravel()
    saved = {"depth": np.stack([p["depth"] for p in predictions]).astype(np.float16),
             "extrinsics": np.stack([p["extrinsics"] for p in predictions]).astype(np.float32)}
    return Evaluation(_point_metrics(stats), stats, saved,
                      {"AUC@30_reference31": pose_auc_reference31(worst), "view_pairs": int(len(worst))})


def _point_metrics(stats: ClipStats) -> dict[str, float]:
    rotation, translation = stats.values["rotation"], stats.values["translation"]
    metrics = {key: float(np.mean(stats.values[key])) for key in PER_SAMPLE}
    return metrics | {"AUC@30": pose_auc(np.maximum(rotation, translation).ravel()),
                      "RRA@30": float(np.mean(rotation < POSE_THRESHOLD_DEG)),
                      "RTA@30": float(np.mean(translation < POSE_THRESHOLD_DEG))}


def resample_metrics(stats: ClipStats, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric on each resample of the validation clips (rows of ``weights``); view pairs are pooled
    over the resampled clips as :func:`evaluate` pools them over all clips."""
    weights = np.asarray(weights, dtype=np.float64)
    clips = weights.sum(axis=1)
    metrics = {key: weights @ stats.values[key] / clips for key in PER_SAMPLE}
    rotation, translation = stats.values["rotation"], stats.values["translation"]
    pairs = clips * rotation.shape[1]
    hist = np.stack([pose_error_histogram(errors) for errors in np.maximum(rotation, translation)])
    return metrics | {"AUC@30": pose_auc_from_histogram(weights @ hist, pairs),
                      "RRA@30": weights @ (rotation < POSE_THRESHOLD_DEG).sum(axis=1) / pairs,
                      "RTA@30": weights @ (translation < POSE_THRESHOLD_DEG).sum(axis=1) / pairs}


def net_predictions(outputs: list[dict[str, np.ndarray]], reader: SampleReader,
                       samples: Sequence[Sample]) -> list[dict[str, np.ndarray]]:
    result = []
    for output, sample in zip(outputs, samples, strict=True):
        size = reader.targets(sample)["depth"].shape[1:]
        extrinsics, _ = decode_pose_encoding(output["pose"].astype(np.float64), size)
        result.append({"depth": output["depth"], "points": output["points"], "extrinsics": extrinsics})
    return result


def loss_fn(settings: dict[str, Any]):
    import torch.nn.functional as F

    from probes.losses import confidence_weighted_l1, pose_huber

    def loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], _: torch.Generator) -> torch.Tensor:
        size = targets["depth"].shape[-2:]

        def resized(name: str) -> torch.Tensor:
            value = outputs[name]
            channels_last = value.dim() == 5
            flat = value.flatten(0, 1)
            flat = flat.permute(0, 3, 1, 2) if channels_last else flat[:, None]
            flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
            flat = flat.permute(0, 2, 3, 1) if channels_last else flat[:, 0]
            return flat.unflatten(0, value.shape[:2])

        valid = targets["valid"]
        depth = confidence_weighted_l1(resized("depth"), targets["depth"], resized("depth_conf"), valid,
                                       alpha=settings["conf_alpha"])
        points = confidence_weighted_l1(resized("points"), targets["points"], resized("points_conf"), valid,
                                        alpha=settings["conf_alpha"])
        return depth + points + settings["camera_weight"] * pose_huber(outputs["pose"], targets["pose"])
    return loss


def _cell_targets(truth: dict[str, np.ndarray], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(S*h*w, 4) log depth and xyz per cell (area means over valid pixels), and which cells are mostly valid."""
    valid = truth["valid"].astype(np.float32)
    share = resample(valid, grid, axes=(1, 2))
    depth = resample(truth["depth"] * valid, grid, axes=(1, 2)) / np.maximum(share, 1e-6)
    points = resample(truth["points"] * valid[..., None], grid, axes=(1, 2)) / np.maximum(share, 1e-6)[..., None]
    usable = share > 0.5
    values = np.concatenate([np.log(np.where(usable, depth, 1.0))[..., None], points], axis=-1)
    return values.reshape(-1, 4), usable.ravel()


def _pose_inputs(features: np.ndarray) -> np.ndarray:
    """(S, 2C): each view's pooled features next to view 0's (a relative pose needs both)."""
    pooled = features.mean(axis=(1, 2))
    return np.concatenate([pooled, np.broadcast_to(pooled[:1], pooled.shape)], axis=1)


def _pose_targets(extrinsics: np.ndarray) -> np.ndarray:
    return extrinsics.reshape(len(extrinsics), 12)


def _training_data(reader: SampleReader, samples: Sequence[Sample], settings: dict[str, Any],
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tokens, cells, views, poses = [], [], [], []
    for sample in samples:
        features, truth = reader.features(sample), reader.targets(sample)
        values, usable = _cell_targets(truth, features.shape[1:3])
        tokens.append(features.reshape(-1, features.shape[-1])[usable])
        cells.append(values[usable])
        views.append(_pose_inputs(features))
        poses.append(_pose_targets(truth["extrinsics"]))
    x, y = np.concatenate(tokens), np.concatenate(cells)
    if len(y) > settings["max_train_tokens"]:
        keep = np.random.default_rng(seed).choice(len(y), size=settings["max_train_tokens"], replace=False)
        x, y = x[keep], y[keep]
    return x, y, np.concatenate(views), np.concatenate(poses)


def fit_linear(reader: SampleReader, train: Sequence[Sample], val: Sequence[Sample], settings: dict[str, Any],
               seed: int) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray], dict[str, Any]]:
    """(validation predictions, weights, info) of the per-token and per-view ridge regressions."""
    x, y, x_pose, y_pose = _training_data(reader, train, settings, seed)
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tokens = make_pipeline(StandardScaler(), RidgeCV(alphas=settings["alphas"])).fit(x, y)
    pose = make_pipeline(StandardScaler(), Ridge(alpha=settings["pose_alpha"])).fit(x_pose, y_pose)
    predictions = []
    for sample in val:
        features = reader.features(sample)
        cells = tokens.predict(features.reshape(-1, features.shape[-1])).reshape(*features.shape[:3], 4)
        raw = pose.predict(_pose_inputs(features)).reshape(-1, 3, 4)
        extrinsics = np.concatenate([nearest_rotation(raw[:, :, :3]), raw[:, :, 3:]], axis=2)
        predictions.append({"depth": np.exp(cells[..., 0]), "points": cells[..., 1:], "extrinsics": extrinsics})
    weights = {f"tokens.{name}": value for name, value in _linear_weights(tokens).items()}
    weights |= {f"pose.{name}": value for name, value in _linear_weights(pose).items()}
    return predictions, weights, {"train_tokens": int(len(y)), "alpha": float(tokens[-1].alpha_)}


def _linear_weights(pipeline: Any) -> dict[str, np.ndarray]:
    """Weights acting on raw features: y = x @ coef.T + intercept."""
    scaler, model = pipeline[0], pipeline[-1]
    coef = model.coef_ / scaler.scale_
    return {"coef": coef.astype(np.float32),
            "intercept": (model.intercept_ - coef @ scaler.mean_).astype(np.float32)}


SPEC = TaskSpec(
    name="geometry", views=4, required_arrays=REQUIRED_ARRAYS, options={},
    linear={"alphas": [0.1, 1.0, 10.0, 100.0, 1000.0], "max_train_tokens": 200_000, "pose_alpha": 1.0,
            "draws_per_clip": 2},
    training={"epochs": 60, "batch_size": 10, "lr": 1e-4, "weight_decay": 0.05, "warmup_epochs": 3, "patience": 8,
              "draws_per_clip": 1, "device": "auto", "camera_weight": 1.0, "conf_alpha": 0.05},
    nets={
        "light": NetKind("probes.nets:LightGeometry", dict(LIGHT_COMMON),
                         training={"lr": 1e-3, "epochs": 40, "patience": 8}),
        "paper": NetKind("probes.paper:PaperGeometry",
                         {**PAPER_COMMON, "dim": 1024, "depth": 4, "dpt_features": 256,
                          "dpt_channels": [256, 512, 1024, 1024], "output_stride": 4, "camera_depth": 4,
                          "camera_iterations": 4}),
    },
    metrics=METRICS, headline=("P-map", "AbsRel", "AUC@30"), percent=(),
    make_targets=make_targets, fit_linear=fit_linear, loss_fn=loss_fn, net_predictions=net_predictions,
    evaluate=evaluate, resample_metrics=resample_metrics,
)
