"""What a config will cost before it runs: jobs and feature-cache size per model, and in total.

Sizes are the stored float16 features before compression (a lossy ``compression`` codec divides them by its
ratio; lossless zstd gains little on activations, docs/stores.md), from each extractor's
:meth:`~extractors.base.Extractor.feature_shape` on every dataset's clip lengths and frame size. A dataset
that has not been written yet is measured on its first clip's headers, and every clip is assumed to be like
it (said in the table).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractors.captures import parse_token
from extractors.ids import SourceId
from extractors.tiny_models import built_by_workflow

FLOAT16_BYTES = 2


@dataclass(frozen=True)
class DatasetGeometry:
    """Clip lengths (frames -> clips) and frame size of a dataset, and how they are known."""

    lengths: Counter
    height: int
    width: int
    known: str  # "store", "config" or "first clip"


@dataclass(frozen=True)
class ModelCost:
    name: str
    paradigm: str
    sources: int
    extraction_jobs: int
    probe_jobs: int
    bytes: int | None  # None when a family cannot tell its feature shape before extraction


def dataset_geometry(dataset: Any) -> DatasetGeometry:
    """Clip lengths and frame size of a planned dataset (:class:`~workflow.planning.datasets.DatasetPlan`)."""
    entry = dataset.entry
    if Path(dataset.store).exists():
        from clipstore import open_clip_store

        store = open_clip_store(dataset.store)
        lengths = Counter(int(n) for n in store.frame_counts if n > 0)
        return DatasetGeometry(lengths, int(store.attrs["height"]), int(store.attrs["width"]), "store")
    if dataset.kind == "synthetic":
        return DatasetGeometry(Counter(dataset.lengths.values()), int(entry["height"]), int(entry["width"]),
                               "config")
    from clipstore.kinds import open_reader, store_options

    reader = open_reader(entry)
    entries = reader.entries()
    shape = reader.shape(entries[0])
    frames = store_options(entry).length(shape.frames)
    return DatasetGeometry(Counter({frames: len(entries)}), shape.height, shape.width, "first clip")


def clip_bytes(extractor: Any, geometry: DatasetGeometry) -> int | None:
    """Bytes of one layer at one timestep over all of a dataset's clips, or None when unknown."""
    total = 0
    for frames, clips in geometry.lengths.items():
        shape = extractor.feature_shape(frames, geometry.height, geometry.width)
        if shape is None:
            return None
        size = FLOAT16_BYTES
        for extent in shape:
            size *= int(extent)
        total += size * clips
    return total


def model_costs(plan: Any, geometries: dict[str, DatasetGeometry] | None = None) -> list[ModelCost]:
    """Per model (and materialised fusion): sources, extraction and probe jobs, and feature-cache bytes."""
    if geometries is None:
        geometries = {name: dataset_geometry(d) for name, d in plan.datasets.items()}
    probes = Counter(SourceId.parse(Path(path).parent.name).model for path in plan.probe_dirs())
    costs = []
    for name, model in plan.models.items():
        extractor = plan.extractor(name)
        per_layer = [clip_bytes(extractor, g) for g in geometries.values()]
        layers = len(model.feature_keys) * len(model.timesteps)
        # A per-head capture splits one (layer, kind) array's channels over its heads: count kinds, not heads.
        kinds = len({parse_token(capture)[0] for capture in model.captures})
        size = None if None in per_layer else sum(per_layer) * len(model.layers) * len(model.timesteps) * kinds
        jobs = sum(plan.num_shards(d) for d in plan.datasets)
        costs.append(ModelCost(name, model.paradigm, layers, jobs, probes[name], size))
    for name, fusion in plan.fusions.items():
        size = None
        if fusion.materialise:  # branches side by side on one grid: about the sum of one layer of each
            branch_sizes = [clip_bytes(plan.extractor(b.model), g) for b in fusion.sources for g in geometries.values()]
            size = None if None in branch_sizes else sum(branch_sizes)
        jobs = sum(plan.num_shards(d) for d in plan.datasets) if fusion.materialise else 0
        costs.append(ModelCost(name, "fusion", 1, jobs, probes[name], size))
    return costs


def human_bytes(size: int | None) -> str:
    if size is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_plan(plan: Any) -> str:
    """The planning table: per model and in total, jobs and the estimated feature-cache size."""
    geometries = {name: dataset_geometry(d) for name, d in plan.datasets.items()}
    costs = model_costs(plan, geometries)
    lines = ["Plan: feature cache (float16, before compression) and jobs per model", ""]
    for name, geometry in geometries.items():
        clips = sum(geometry.lengths.values())
        frames = "/".join(str(f) for f in sorted(geometry.lengths))
        lines.append(f"  dataset {name}: {clips} clips of {frames} frames at {geometry.height}x{geometry.width} "
                     f"(from the {geometry.known})")
    lines += ["", f"  {'model':<28} {'paradigm':<15} {'sources':>7} {'extract':>8} {'probe':>7} {'cache':>10}"]
    for cost in costs:
        lines.append(f"  {cost.name:<28} {cost.paradigm:<15} {cost.sources:>7} {cost.extraction_jobs:>8} "
                     f"{cost.probe_jobs:>7} {human_bytes(cost.bytes):>10}")
    known = [c.bytes for c in costs if c.bytes is not None]
    unknown = [c.name for c in costs if c.bytes is None]
    written = sum(d.kind != "clipstore" for d in plan.datasets.values())
    tiny = len({m.checkpoint for m in plan.models.values() if m.checkpoint and built_by_workflow(m.checkpoint)})
    indexes = len(plan.datasets) * (sum(len(m.timesteps) for m in plan.models.values())
                                    + len(plan.materialised_fusions))
    total_jobs = sum(c.extraction_jobs + c.probe_jobs for c in costs) + written + tiny + indexes + 2  # + tables, plots
    lines += ["", f"  total: {total_jobs} jobs in the whole DAG (finished ones are skipped), feature cache "
                  f"{human_bytes(sum(known))}" + (f" + unknown for {unknown}" if unknown else "")]
    return "\n".join(lines)
