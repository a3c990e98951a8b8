"""How sure a probe score is (docs/results.md, "Uncertainty").

- **Over validation clips**: a percentile bootstrap. Clips are resampled with replacement ``resamples`` times
  (seeded), and every metric is recomputed on each resample from the per-clip statistics the task's
  evaluation kept (:class:`probes.result.ClipStats`): no probe is re-trained and nothing is re-clustered.
- **Over training seeds** (a probe kind's ``seeds: N``): the probe is trained N times with seeds
  ``seed, seed + 1, ...``; the score is the mean over seeds, the spread their sample standard deviation, and
  the bootstrap interval is that of the seed mean (each resample scores every seed on the same clips).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from probes.bootstrap import percentile_interval, resample_weights
from probes.result import ClipStats, ProbeResult
from probes.taskspec import TaskSpec


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    @classmethod
    def from_config(cls, entry: Mapping[str, Any] | None, seed: int) -> BootstrapSettings:
        entry = dict(entry or {})
        return cls(int(entry.get("resamples", cls.resamples)), float(entry.get("level", cls.level)), seed)


def confidence_intervals(task: TaskSpec, stats: Sequence[ClipStats],
                         settings: BootstrapSettings) -> dict[str, list[float]]:
    """{metric: [lower, upper]} of the seed-mean of every metric, from each seed's per-clip statistics."""
    clips = stats[0].clips
    if any(not np.array_equal(s.clips, clips) for s in stats[1:]):
        raise ValueError("every seed must be scored on the same validation clips")
    weights = resample_weights(len(clips), settings.resamples, settings.seed)
    per_seed = [task.resample_metrics(s, weights) for s in stats]
    return {metric: list(percentile_interval(np.stack([p[metric] for p in per_seed]), settings.level))
            for metric in per_seed[0]}


def summarise(task: TaskSpec, runs: Sequence[ProbeResult], seeds: Sequence[int],
              settings: BootstrapSettings) -> dict[str, Any]:
    """What metrics.json records of a probe trained with each of ``seeds`` (``runs`` in that order)."""
    metrics = {key: float(np.mean([run.metrics[key] for run in runs])) for key in runs[0].metrics}
    spread = {key: float(np.std([run.metrics[key] for run in runs], ddof=1)) if len(runs) > 1 else None
              for key in metrics}
    return {"metrics": metrics,
            "ci": confidence_intervals(task, [run.clip_stats for run in runs], settings),
            "seed_std": spread,
            "seeds": list(seeds),
            "seed_metrics": [run.metrics for run in runs],
            "val_clips": int(len(runs[0].clip_stats.clips)),
            "bootstrap": {**asdict(settings), "method": "percentile", "unit": "validation clip"}}
