"""Render the built-in synthetic dataset into a canonical clip store."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from clipstore.ingest import StoreOptions
from clipstore.store import is_ground_truth, write_clip_store
from clipstore.synthetic import CLASS_NAMES, SyntheticSpec, clip_ids, clip_splits, render_clip


def write_synthetic_store(path: str | os.PathLike, spec: SyntheticSpec, options: StoreOptions = StoreOptions(), *,
                          progress: bool = True) -> Path:
    """Write ``spec``'s clips (exact ground truth, every array of the layout) to ``path``; ``options`` stores
    less as for any kind (``max_frames``, ``ground_truth: query``)."""
    frames = options.length(spec.frames)
    truth = options.ground_truth_frames(frames)
    rows = np.arange(frames) if truth is None else np.asarray(truth)

    def render(clip: int) -> dict[str, np.ndarray]:
        arrays = render_clip(spec, clip)
        return {name: values[rows] if is_ground_truth(name) else values[:frames] for name, values in arrays.items()}

    return write_clip_store(
        path,
        render,
        clip_ids=clip_ids(spec),
        splits=clip_splits(spec),
        class_names=CLASS_NAMES,
        frames=frames,
        height=spec.height,
        width=spec.width,
        attributes={"source_kind": "synthetic", "source_root": None, "generator_seed": spec.seed,
                    "generator": asdict(spec), "store_options": asdict(options)},
        ground_truth_frames=truth,
        progress=progress,
    )
