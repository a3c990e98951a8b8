"""One probe job: one (dataset, task, source, probe kind) -> one output directory.

The directory holds ``metrics.json`` (scores, run facts, settings, provenance of the source),
``predictions.npz`` (validation samples' clips, views and predictions), ``weights.safetensors`` (the fitted
probe; its metadata names task, kind and source) and, for the torch kinds, ``curves.csv`` (one row per
epoch). It is written under ``<dir>.partial`` and renamed when complete, so a killed job leaves nothing that
looks finished.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from clipstore import StoreError, open_clip_store
from probes.fitting import fit_and_score
from probes.result import ProbeResult
from probes.sources import FeatureSource, SourceId
from probes.tasks import TASKS

log = logging.getLogger(__name__)

PROVENANCE_KEYS = ("model", "family", "paradigm", "checkpoint", "timestep", "random_init", "seed")


def _splits(clips_store: Any, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    train, val = clips_store.clips_in("train"), clips_store.clips_in("val")
    if len(train) == 0 or len(val) == 0:
        raise StoreError(f"dataset {dataset!r} ({clips_store.path}): needs clips in both the 'train' and 'val' "
                         f"splits, has {len(train)} train and {len(val)} val")
    return train, val


def _publish(out_dir: Path, record: dict[str, Any], result: ProbeResult) -> None:
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.savez_compressed(partial / "predictions.npz", **result.predictions)
    _save_weights(partial / "weights.safetensors", result.weights,
                  {key: str(record[key]) for key in ("dataset", "task", "probe", "source")})
    if result.curves:
        with open(partial / "curves.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result.curves[0]))
            writer.writeheader()
            writer.writerows(result.curves)
    (partial / "metrics.json").write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)


def _save_weights(path: Path, weights: dict[str, Any], metadata: dict[str, str]) -> None:
    if any(not isinstance(value, np.ndarray) for value in weights.values()):
        from safetensors.torch import save_file
    else:
        from safetensors.numpy import save_file
        weights = {key: np.ascontiguousarray(value) for key, value in weights.items()}
    save_file(weights, str(path), metadata=metadata)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in metrics.json")


def run_probe(*, dataset: str, clip_store: str | os.PathLike, shard_paths: list[str], source: str,
              task: str, probe: str, settings: dict[str, Any], task_options: dict[str, Any], seed: int,
              out_dir: str | os.PathLike, threads: int = 1) -> dict[str, Any]:
    """Train and evaluate one probe; returns the record written to ``metrics.json``. ``threads`` caps torch's
    CPU threads for the torch probe kinds (jobs running side by side must not oversubscribe the cores)."""
    started = time.perf_counter()
    if probe != "linear":
        import torch

        torch.set_num_threads(threads)
    spec = TASKS[task]
    clips_store = open_clip_store(clip_store)
    clips_store.require(spec.required_arrays, needed_by=f"task {task!r} on dataset {dataset!r}")
    train, val = _splits(clips_store, dataset)
    feature_source = FeatureSource(SourceId.parse(source), shard_paths)
    result = fit_and_score(spec, probe, feature_source, clips_store, train, val, settings, task_options, seed)
    record = {
        "dataset": dataset, "task": task, "probe": probe, "source": source,
        "layer": feature_source.id.layer,
        **{key: feature_source.attrs.get(key) for key in PROVENANCE_KEYS},
        "metrics": result.metrics, "info": result.info, "settings": settings, "task_options": task_options,
        "feature_grid": list(feature_source.grid), "channels": feature_source.channels,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _publish(Path(out_dir), record, result)
    return record
