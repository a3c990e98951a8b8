#!/usr/bin/env python
"""The cost of the 95% bootstrap intervals every probe run computes, per task and number of validation clips.

Builds per-clip statistics shaped like each task's evaluation (tagging: labels and scores over ``--classes``
classes; instance: per-clip T-mIoU and T-SR; geometry: per-sample depth and point-map scores and the pose
errors of 6 view pairs) and times :func:`probes.uncertainty.confidence_intervals` (``--resamples`` seeded
resamples, vectorised as count weights) against the naive loop it replaces for tagging: recomputing
:func:`probes.metrics.tagging_metrics` on each explicitly resampled set of clips (timed on 50 resamples
and scaled).

Run: ``.venv/bin/python bench/bootstrap.py`` (about 20 s on 2 cores). It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchlib import cores, print_table  # noqa: E402
from probes.metrics import tagging_metrics  # noqa: E402
from probes.result import ClipStats  # noqa: E402
from probes.tasks import TASKS  # noqa: E402
from probes.uncertainty import BootstrapSettings, confidence_intervals  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[12, 300, 1000], help="validation clips")
    parser.add_argument("--classes", type=int, default=20, help="tagging classes (default 20, ScanNet20)")
    parser.add_argument("--resamples", type=int, default=1000)
    return parser.parse_args()


def clip_stats(task: str, n: int, classes: int, rng: np.random.Generator) -> ClipStats:
    clips = np.arange(n)
    if task == "tagging":
        labels = (rng.random((n, classes)) < np.linspace(0.05, 0.8, classes)).astype(np.int8)
        scores = np.clip(labels * 0.3 + rng.random((n, classes)) * 0.7, 0, 1)
        return ClipStats(clips, {"labels": labels, "scores": scores}, {"train_pos_rate": labels.mean(axis=0)})
    if task == "instance":
        values = rng.random(n)
        values[rng.random(n) < 0.1] = np.nan  # clips without an instance
        return ClipStats(clips, {"T-mIoU": values, "T-SR": (values > 0.5).astype(float)})
    pairs = 6  # 4 views
    return ClipStats(clips, {"AbsRel": rng.random(n), "delta1": rng.random(n), "P-map": rng.random(n),
                             "rotation": rng.random((n, pairs)) * 40, "translation": rng.random((n, pairs)) * 60})


def naive_tagging_seconds(stats: ClipStats, resamples: int, rng: np.random.Generator, timed: int = 50) -> float:
    n = len(stats.clips)
    started = time.perf_counter()
    for _ in range(timed):
        picked = rng.integers(0, n, size=n)
        try:
            tagging_metrics(stats.values["labels"][picked], stats.values["scores"][picked],
                            stats.context["train_pos_rate"])
        except ValueError:
            pass  # a resample without any positive
    return (time.perf_counter() - started) / timed * resamples


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(0)
    settings = BootstrapSettings(resamples=args.resamples, seed=0)
    rows = []
    for n in args.clips:
        for task in TASKS:
            stats = clip_stats(task, n, args.classes, rng)
            started = time.perf_counter()
            intervals = confidence_intervals(TASKS[task], [stats], settings)
            seconds = time.perf_counter() - started
            naive = f"{naive_tagging_seconds(stats, args.resamples, rng):.2f} s" if task == "tagging" else ""
            first = next(iter(intervals))
            rows.append([str(n), task, f"{seconds * 1e3:.1f} ms", naive,
                         f"{first} [{intervals[first][0]:.3f}, {intervals[first][1]:.3f}]"])
    print(f"95% bootstrap intervals, {args.resamples} resamples, {cores()} cores\n")
    print_table(["val clips", "task", "all metrics", "naive loop (tagging)", "e.g."], rows, "rllrl")


if __name__ == "__main__":
    main()
