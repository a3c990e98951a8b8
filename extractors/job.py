"""One extraction job: one (dataset, model, timestep, shard of clips) -> one complete feature store."""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from clipstore import open_clip_store
from extractors.featurestore import FeatureStoreWriter
from extractors.registry import ModelConfig

log = logging.getLogger(__name__)
RECORDED_LIBRARIES = ("numpy", "zarr", "torch", "diffusers", "transformers", "scikit-learn")


def num_shards(num_clips: int, clips_per_shard: int) -> int:
    return max(1, math.ceil(num_clips / clips_per_shard))


def shard_clips(num_clips: int, clips_per_shard: int, shard: int) -> list[int]:
    """Clip-store indices of extraction shard ``shard`` (contiguous blocks of ``clips_per_shard``)."""
    count = num_shards(num_clips, clips_per_shard)
    if not 0 <= shard < count:
        raise ValueError(f"shard {shard} out of range: {num_clips} clips in {count} shards")
    return list(range(shard * clips_per_shard, min(num_clips, (shard + 1) * clips_per_shard)))


def library_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run_extraction(*, clip_store: str | os.PathLike, output: str | os.PathLike, dataset: str,
                   model: ModelConfig, timestep: int | None, shard: int, clips_per_shard: int,
                   seed: int, progress: bool = True) -> Path:
    """Extract every requested layer of ``model`` at ``timestep`` for one shard of clips."""
    if timestep not in model.timesteps:
        raise ValueError(f"model {model.name!r}: timestep {timestep} is not among its {list(model.timesteps)}")
    clips_store = open_clip_store(clip_store)
    clips_store.require(["frames"], needed_by=f"extraction of model {model.name!r}")
    clips = shard_clips(len(clips_store), clips_per_shard, shard)
    extractor = model.build(seed)
    fingerprint = {"model": model.to_json(), "timestep": timestep, "seed": seed, "dataset": dataset}
    writer = FeatureStoreWriter(output, clip_index=clips, layers=model.layers, fingerprint=fingerprint)
    if writer.store.resumed:
        log.info("resuming %s: %d of %d clips already written", output, len(clips) - len(writer.pending),
                 len(clips))
    if writer.pending:
        extractor.load()
    frames = clips_store.zarr_array("frames")
    for position in tqdm(writer.pending, desc=f"{model.name} {dataset} shard {shard}", unit="clip",
                         disable=not progress):
        clip = clips[position]
        writer.write_clip(position, extractor.extract(frames[clip], model.layers, timestep, clip=clip))
    provenance = {**extractor.provenance(), **extractor.noise_attributes(timestep)}
    return writer.finish(_attributes(clips_store, dataset, model, timestep, seed, provenance))


def _attributes(clips_store: Any, dataset: str, model: ModelConfig, timestep: int | None, seed: int,
                provenance: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "clip_store": str(clips_store.path),
        "model": model.name,
        "family": model.family,
        "paradigm": model.paradigm,
        "checkpoint": model.checkpoint,
        "timestep": timestep,
        "seed": seed,
        "input_frames": int(clips_store.attrs["num_frames"]),
        "input_resolution": [int(clips_store.attrs["height"]), int(clips_store.attrs["width"])],
        "library_versions": library_versions(),
        **provenance,
    }
