"""Instance grouping: a per-token embedding that groups the pixels of one object across views.

Every probe kind maps tokens to L2-normalised embeddings; evaluation is the paper's (docs/tasks.md): per
sample, PCA of the embeddings to ``pca_dims`` dimensions, HDBSCAN (scikit-learn's) with ``min_cluster_size``
and ``min_samples``, nearest upsampling of the cluster labels to mask resolution, then
:func:`probes.metrics.instance_metrics` (T-mIoU, T-SR), averaged over samples with at least one instance.

``linear``: linear discriminant analysis (scikit-learn, shrunk within-instance covariance) on tokens labelled
with the instance covering most of their cell: a closed-form linear map that pulls one instance's tokens
together and pushes instances apart.
``light`` / ``paper``: a torch head trained with the multi-view pull/push loss on ``pixels_per_sample``
sampled valid pixels per sample (:func:`probes.losses.pull_push_loss`, margin ``margin``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipstore import ClipStore
from clipstore.grid import resample
from probes.bootstrap import weighted_nanmean
from probes.data import Sample, SampleReader
from probes.metrics import instance_metrics
from probes.netconfig import LIGHT_COMMON, PAPER_COMMON
from probes.result import ClipStats, Evaluation
from probes.taskspec import NetKind, TaskSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch loads only in the jobs that train a torch probe
    import torch

METRICS = {"T-mIoU": True, "T-SR": True}


def make_targets(options: dict[str, Any]):
    def targets(clips_store: ClipStore, sample: Sample) -> dict[str, np.ndarray]:
        return {"ids": clips_store.select("instance", [sample.clip], sample.views)[0].astype(np.int64)}
    return targets


def cell_labels(ids: np.ndarray, grid: tuple[int, int], min_share: float) -> np.ndarray:
    """(S, h, w) the instance id covering at least ``min_share`` of each cell's pixels, else 0 (mixed/void)."""
    present = [i for i in np.unique(ids) if i != 0]
    labels = np.zeros((ids.shape[0], *grid), dtype=np.int64)
    if not present:
        return labels
    shares = np.stack([resample((ids == i).astype(np.float32), grid, axes=(1, 2)) for i in present])
    best = shares.argmax(axis=0)
    return np.where(shares.max(axis=0) >= min_share, np.asarray(present)[best], 0)


def upsample_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(S, H, W) from (S, h, w): each pixel takes the cell its centre falls in."""
    rows = (np.arange(size[0]) + 0.5) * labels.shape[1] // size[0]
    cols = (np.arange(size[1]) + 0.5) * labels.shape[2] // size[1]
    return labels[:, rows.astype(int)][:, :, cols.astype(int)]


def cluster(embedding: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """(S, h, w) cluster labels (-1 = noise) of one sample's (S, h, w, E) token embeddings."""
    tokens = embedding.reshape(-1, embedding.shape[-1]).astype(np.float64)
    if len(tokens) < options["min_cluster_size"]:
        return np.full(embedding.shape[:3], -1)
    dims = min(options["pca_dims"], tokens.shape[1], len(tokens))
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    reduced = PCA(n_components=dims, svd_solver="full").fit_transform(tokens)
    labels = HDBSCAN(min_cluster_size=options["min_cluster_size"], min_samples=options["min_samples"],
                     copy=True).fit_predict(reduced)
    return labels.reshape(embedding.shape[:3])


def evaluate(embeddings: Sequence[np.ndarray], reader: SampleReader, val: Sequence[Sample],
             train: Sequence[Sample], options: dict[str, Any]) -> Evaluation:
    """Per sample: cluster, score; a sample without any instance has no score (NaN) and is left out of
    the means."""
    per_clip = {key: np.full(len(val), np.nan) for key in METRICS}
    grid_labels = []
    for row, (embedding, sample) in enumerate(zip(embeddings, val, strict=True)):
        ids = reader.targets(sample)["ids"]
        labels = cluster(embedding, options)
        grid_labels.append(labels.astype(np.int16))
        if (ids != 0).any():
            for key, value in instance_metrics(upsample_nearest(labels, ids.shape[1:]), ids).items():
                per_clip[key][row] = value
    scored = int(np.isfinite(per_clip["T-mIoU"]).sum())
    if not scored:
        raise ValueError("instance: no validation sample shows any instance (every 'instance' pixel is 0)")
    stats = ClipStats(np.array([s.clip for s in val]), per_clip)
    clusters = [len(set(np.unique(labels)) - {-1}) for labels in grid_labels]
    return Evaluation({key: float(np.nanmean(values)) for key, values in per_clip.items()}, stats,
                      {"cluster_labels": np.stack(grid_labels)},
                      {"scored_samples": scored, "mean_clusters": float(np.mean(clusters))})


def resample_metrics(stats: ClipStats, weights: np.ndarray) -> dict[str, np.ndarray]:
    return {key: weighted_nanmean(values, weights) for key, values in stats.values.items()}


def net_predictions(outputs: list[dict[str, np.ndarray]], reader: SampleReader,
                    samples: Sequence[Sample]) -> list[np.ndarray]:
    return [o["embedding"] for o in outputs]


def loss_fn(settings: dict[str, Any]):
    import torch

    from probes.losses import pull_push_loss

    def loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
             generator: torch.Generator) -> torch.Tensor:
        embedding, ids = outputs["embedding"], targets["ids"]
        grid, size = embedding.shape[2:4], ids.shape[2:4]
        losses = []
        for b in range(len(ids)):
            view, row, col = torch.nonzero(ids[b], as_tuple=True)
            if len(view) < 2:
                continue
            keep = torch.randperm(len(view), generator=generator)[: settings["pixels_per_sample"]].to(view.device)
            view, row, col = view[keep], row[keep], col[keep]
            picked = embedding[b, view, row * grid[0] // size[0], col * grid[1] // size[1]]
            losses.append(pull_push_loss(picked, ids[b, view, row, col], margin=settings["margin"]))
        return torch.stack(losses).mean() if losses else embedding.sum() * 0.0
    return loss


def _token_data(reader: SampleReader, samples: Sequence[Sample], settings: dict[str, Any],
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k, sample in enumerate(samples):
        features = reader.features(sample)
        labels = cell_labels(reader.targets(sample)["ids"], features.shape[1:3], settings["min_cell_share"])
        keep = labels.ravel() != 0
        xs.append(features.reshape(-1, features.shape[-1])[keep])
        ys.append(labels.ravel()[keep] + (k + 1) * 1_000_000)  # instance ids are only unique within a sample
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > settings["max_train_tokens"]:
        keep = np.random.default_rng(seed).choice(len(y), size=settings["max_train_tokens"], replace=False)
        x, y = x[keep], y[keep]
    ids, counts = np.unique(y, return_counts=True)
    grouped = np.isin(y, ids[counts >= 2])  # a lone token has no within-instance spread to learn from
    return x[grouped], y[grouped]


def fit_linear(reader: SampleReader, train: Sequence[Sample], val: Sequence[Sample], settings: dict[str, Any],
               seed: int) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(validation embeddings, weights, info): LDA fitted on training tokens, embeddings L2-normalised."""
    x, y = _token_data(reader, train, settings, seed)
    classes = len(np.unique(y))
    if classes < 2:
        # A grid too coarse for any cell to be mostly one object: nothing to fit, so the embedding is the
        # features themselves (recorded in info; the scores are then those of unprobed features).
        log.warning("instance linear probe: %d instance(s) cover %s of a cell in the training samples; "
                    "clustering the raw features instead", classes, settings["min_cell_share"])
        projection = np.eye(reader.source.channels, dtype=np.float32)
    else:
        dims = min(settings["embed_dim"], classes - 1, x.shape[1])
        # shrinking the within-instance covariance keeps near-constant channels from dominating the projection
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        lda = LinearDiscriminantAnalysis(n_components=dims, solver="eigen", shrinkage=settings["shrinkage"])
        projection = lda.fit(x, y).scalings_[:, :dims].astype(np.float32)
    embeddings = []
    for sample in val:
        features = reader.features(sample)
        projected = features.reshape(-1, features.shape[-1]) @ projection
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        embeddings.append(projected.reshape(*features.shape[:3], -1).astype(np.float32))
    weights = {"projection": projection}  # embedding = normalise(features @ projection)
    return embeddings, weights, {"train_tokens": int(len(y)), "train_instances": classes,
                                 "embed_dim": int(projection.shape[1]), "fitted": classes >= 2}


SPEC = TaskSpec(
    name="instance", views=8, required_arrays=("instance",),
    options={"pca_dims": 8, "min_cluster_size": 30, "min_samples": 5},
    linear={"embed_dim": 32, "shrinkage": 0.5, "max_train_tokens": 100_000, "min_cell_share": 0.5,
            "draws_per_clip": 2},
    training={"epochs": 40, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 2, "patience": 5,
              "draws_per_clip": 1, "device": "auto", "pixels_per_sample": 2048, "margin": 1.0},
    nets={
        "light": NetKind("probes.nets:LightInstance", {**LIGHT_COMMON, "embed_dim": 32},
                         training={"lr": 1e-3, "epochs": 20, "patience": 5, "pixels_per_sample": 512}),
        "paper": NetKind("probes.paper:PaperInstance",
                         {**PAPER_COMMON, "dim": 1024, "depth": 2, "embed_dim": 32, "hidden": 64}),
    },
    metrics=METRICS, headline=("T-SR", "T-mIoU"), percent=("T-SR", "T-mIoU"),
    make_targets=make_targets, fit_linear=fit_linear, loss_fn=loss_fn, net_predictions=net_predictions,
    evaluate=evaluate, resample_metrics=resample_metrics,
)
