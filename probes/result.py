"""What evaluation and probe runs return: scores, the per-clip statistics behind them, and files to keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ClipStats:
    """Per validation clip statistics kept by a task's evaluation: enough to recompute every metric on any
    resample of the clips (the bootstrap), with no re-training or re-clustering.

    ``values`` arrays have one row per clip of ``clips``; ``context`` holds what is fixed across resamples
    (e.g. the training split's class rates that define tagging's head/mid/tail buckets).
    """

    clips: np.ndarray
    values: dict[str, np.ndarray]
    context: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.values.items():
            if len(value) != len(self.clips):
                raise ValueError(f"clip statistic {key!r} has {len(value)} rows for {len(self.clips)} clips")


@dataclass
class Evaluation:
    """A task's scores of one probe's validation predictions."""

    metrics: dict[str, float]  # point estimates, one per metric the task reports
    clip_stats: ClipStats
    saved: dict[str, np.ndarray] = field(default_factory=dict)  # predictions kept for inspection
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeResult:
    """One trained and scored probe (one seed)."""

    metrics: dict[str, float]  # the numbers the results tables show
    clip_stats: ClipStats
    info: dict[str, Any] = field(default_factory=dict)  # sample counts, chosen hyper-parameters, ...
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # saved for inspection
    weights: dict[str, Any] = field(default_factory=dict)  # the fitted probe: NumPy arrays or torch tensors
    curves: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (torch kinds)
