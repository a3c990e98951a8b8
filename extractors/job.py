"""One extraction job: one (dataset, model, timestep, shard of clips) -> one complete feature store."""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import sys
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


def run_extraction(*, clip_store: str | os.PathLike, outputs: dict[int | None, str | os.PathLike], dataset: str,
                   model: ModelConfig, shard: int, clips_per_shard: int, seed: int,
                   progress: bool = True, threads: int | None = None) -> list[Path]:
    """Extract every requested layer of ``model`` for one shard of clips, at every timestep of ``outputs``
    (timestep -> store path). The model loads once and each clip is read and encoded once. ``threads``
    caps torch's CPU threads (jobs running side by side must not oversubscribe the cores)."""
    unknown = [t for t in outputs if t not in model.timesteps]
    if unknown:
        raise ValueError(f"model {model.name!r}: timesteps {unknown} are not among its {list(model.timesteps)}")
    clips_store = open_clip_store(clip_store)
    clips = shard_clips(len(clips_store), clips_per_shard, shard)
    extractor = model.build(seed)
    clips_store.require(extractor.inputs, needed_by=f"extraction of model {model.name!r}")
    writers = {t: FeatureStoreWriter(path, clip_index=clips, layers=model.layers, compression=model.compression,
                                     captures=model.captures,
                                     fingerprint={"model": model.to_json(), "timestep": t, "seed": seed,
                                                  "dataset": dataset})
               for t, path in outputs.items()}
    pending_by_timestep = {t: set(w.pending) for t, w in writers.items()}  # read once, not per clip
    pending = sorted(set().union(*pending_by_timestep.values()))
    if len(pending) < len(clips):
        log.info("resuming %s shard %d: %d of %d clips still to extract", model.name, shard, len(pending), len(clips))
    if pending or not all(writer.store.marked for writer in writers.values()):  # provenance needs the model
        extractor.load()
        limit_torch_threads(threads)
    lengths = clips_store.frame_counts
    pending.sort(key=lambda p: -int(lengths[clips[p]]))  # longest first: the first clip sizes the arrays
    for position in tqdm(pending, desc=f"{model.name} {dataset} shard {shard}", unit="clip", disable=not progress):
        clip = clips[position]
        todo = tuple(t for t, positions in pending_by_timestep.items() if position in positions)
        if lengths[clip] == 0:  # skipped when the dataset was written: no frames, no features
            for timestep in todo:
                writers[timestep].write_clip(position, None)
            continue
        arrays, frame_maps = clips_store.clip_arrays(clip, extractor.inputs)
        features = extractor.extract_clip(arrays, model.layers, todo, clip=clip, frame_maps=frame_maps)
        for timestep, clip_features in features.items():
            writers[timestep].write_clip(position, clip_features)
    # Publish every timestep's store, each with a snapshot until all are out: Snakemake removes the outputs
    # of a job it saw killed, and a rerun restores a published store from its snapshot, never recomputes it.
    published = [writer.finish({} if writer.store.marked else
                               _attributes(clips_store, dataset, model, t, seed,
                                           {**extractor.provenance(), **extractor.noise_attributes(t)}),
                               keep_snapshot=True)
                 for t, writer in writers.items()]
    for writer in writers.values():
        writer.drop_snapshot()
    return published


def limit_torch_threads(threads: int | None) -> None:
    """Cap torch's intra-op threads when the extractor uses torch (baselines never import it)."""
    if threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


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
