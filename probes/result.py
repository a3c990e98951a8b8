"""What every probe run returns: scores for the table, facts about the run, and files to keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ProbeResult:
    metrics: dict[str, float]  # the numbers the results table shows, one column each
    info: dict[str, Any] = field(default_factory=dict)  # sample counts, chosen hyper-parameters, ...
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # saved for inspection
    weights: dict[str, Any] = field(default_factory=dict)  # the fitted probe: NumPy arrays or torch tensors
    curves: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (torch kinds)
