"""Render the built-in synthetic dataset into a canonical clip store."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from clipstore.store import write_clip_store
from clipstore.synthetic import CLASS_NAMES, SyntheticSpec, clip_ids, clip_splits, render_clip


def write_synthetic_store(path: str | os.PathLike, spec: SyntheticSpec, *, progress: bool = True) -> Path:
    """Write ``spec``'s clips (exact ground truth, every array of the layout) to ``path``."""
    return write_clip_store(
        path,
        lambda clip: render_clip(spec, clip),
        clip_ids=clip_ids(spec),
        splits=clip_splits(spec),
        class_names=CLASS_NAMES,
        frames=spec.frames,
        height=spec.height,
        width=spec.width,
        attributes={"source_kind": "synthetic", "source_root": None, "generator_seed": spec.seed,
                    "generator": asdict(spec)},
        progress=progress,
    )
