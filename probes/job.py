"""One probe job: one (dataset, task, source, probe kind) -> one output directory.

The directory holds ``metrics.json`` (scores with their bootstrap intervals and seed spread, run facts,
settings, provenance of the source), ``clip_stats.npz`` (the per-validation-clip statistics the intervals are
computed from, one set per seed), ``predictions.npz`` (validation samples' clips, views and predictions),
``weights.safetensors`` (the fitted probe; its metadata names task, kind and source) and, for the torch kinds,
``curves.csv`` (one row per seed and epoch). Predictions and weights are those of the first seed. The
directory is written under ``<dir>.partial`` and renamed when complete, so a killed job leaves nothing that
looks finished. docs/results.md describes every file.
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
from probes.sources import PROVENANCE_KEYS, open_source
from probes.tasks import task_spec
from probes.uncertainty import BootstrapSettings, summarise

log = logging.getLogger(__name__)

def _splits(clips_store: Any, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    train, val = clips_store.clips_in("train"), clips_store.clips_in("val")
    if len(train) == 0 or len(val) == 0:
        raise StoreError(f"dataset {dataset!r} ({clips_store.path}): needs clips in both the 'train' and 'val' "
                         f"splits, has {len(train)} train and {len(val)} val")
    return train, val


def _publish(out_dir: Path, record: dict[str, Any], runs: list[ProbeResult]) -> None:
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    first = runs[0]
    np.savez_compressed(partial / "predictions.npz", **first.predictions)
    np.savez_compressed(partial / "clip_stats.npz", **_clip_stats_arrays(runs, record["seeds"]))
    metadata = {key: str(record[key]) for key in ("dataset", "task", "probe", "source")}
    _save_weights(partial / "weights.safetensors", first.weights, metadata | {"seed": str(record["seeds"][0])})
    curves = [{"seed": seed, **row} for seed, run in zip(record["seeds"], runs, strict=True) for row in run.curves]
    if curves:
        with open(partial / "curves.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(curves[0]))
            writer.writeheader()
            writer.writerows(curves)
    (partial / "metrics.json").write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)


def _clip_stats_arrays(runs: list[ProbeResult], seeds: list[int]) -> dict[str, np.ndarray]:
    """``clip_index``, ``context/{key}`` and ``seed{s}/{key}`` arrays of every seed's per-clip statistics."""
    first = runs[0].clip_stats
    arrays = {"clip_index": first.clips, **{f"context/{k}": v for k, v in first.context.items()}}
    for seed, run in zip(seeds, runs, strict=True):
        arrays |= {f"seed{seed}/{key}": value for key, value in run.clip_stats.values.items()}
    return arrays


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


def run_probe(*, dataset: str, clip_store: str | os.PathLike, source: dict[str, Any], task: str, probe: str,
              settings: dict[str, Any], task_options: dict[str, Any], seed: int, out_dir: str | os.PathLike,
              threads: int = 1, bootstrap: BootstrapSettings | None = None) -> dict[str, Any]:
    """Train and evaluate one probe (``settings["seeds"]`` times) on the source ``source`` describes (a spec,
    :func:`probes.sources.open_source`); returns the record written to ``metrics.json``. ``threads`` caps torch's
    CPU threads for the torch probe kinds (jobs running side by side must not oversubscribe the cores)."""
    started = time.perf_counter()
    if probe != "linear":
        import torch

        torch.set_num_threads(threads)
    spec = task_spec(task)
    clips_store = open_clip_store(clip_store)
    clips_store.require(spec.required_arrays, needed_by=f"task {task!r} on dataset {dataset!r}")
    train, val = _splits(clips_store, dataset)
    feature_source = open_source(source)
    seeds = [seed + offset for offset in range(int(settings.get("seeds", 1)))]
    runs = []
    for run_seed in seeds:
        log.info("%s %s probe on %s, seed %d", task, probe, feature_source.id, run_seed)
        runs.append(fit_and_score(spec, probe, feature_source, clips_store, train, val, settings, task_options,
                                  run_seed))
    attrs = feature_source.attrs
    record = {
        "dataset": dataset, "task": task, "probe": probe, "source": str(feature_source.id),
        "layer": feature_source.id.layer, "capture": feature_source.id.capture,
        **{key: attrs.get(key) for key in PROVENANCE_KEYS},
        "branches": [branch["source"] for branch in attrs.get("branches", [])],
        **summarise(spec, runs, seeds, bootstrap or BootstrapSettings(seed=seed)),
        "info": runs[0].info, "settings": settings, "task_options": task_options,
        "feature_grid": list(feature_source.grid), "channels": feature_source.channels,
        "feature_frames": [int(f) for f in feature_source.frame_index],
        "fusion": attrs.get("fusion"),
        "seconds": round(time.perf_counter() - started, 3),
    }
    _publish(Path(out_dir), record, runs)
    return record
