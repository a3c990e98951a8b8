"""The data path every probe kind shares: samples of views -> (features, targets), one sample or a batch.

A task supplies a ``targets(clips_store, sample)`` function; features come from the source at the sample's
views through ``frame_index``. Only the sampled frames' chunks are read, from both the feature store and
the clip store. :func:`prefetch` overlaps reading the next batch with training on the current one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clipstore import ClipStore
from probes.sources import Source


@dataclass(frozen=True)
class Sample:
    clip: int  # index in the clip store
    views: np.ndarray  # clip frames of the sample's views; views[0] is the reference view

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, np.ndarray]]) -> list[Sample]:
        return [cls(int(clip), np.asarray(views)) for clip, views in pairs]


TargetFn = Callable[[ClipStore, Sample], dict[str, np.ndarray]]
Batch = tuple[np.ndarray, dict[str, np.ndarray]]


class SampleReader:
    """Features of one source and targets of one task for samples; targets are cached (they are small
    and re-read every epoch), features are not (they can be hundreds of MB per clip)."""

    def __init__(self, source: Source, clips_store: ClipStore, targets: TargetFn) -> None:
        self.source = source
        self.clips_store = clips_store
        self._targets = targets
        self._cache: dict[tuple[int, tuple[int, ...]], dict[str, np.ndarray]] = {}

    def features(self, sample: Sample) -> np.ndarray:
        return self.source.views(sample.clip, sample.views)

    def targets(self, sample: Sample) -> dict[str, np.ndarray]:
        key = (sample.clip, tuple(int(v) for v in sample.views))
        if key not in self._cache:
            self._cache[key] = self._targets(self.clips_store, sample)
        return self._cache[key]

    def batch(self, samples: Sequence[Sample]) -> Batch:
        """(B, S, h, w, C) float32 features and each target stacked along a new first axis."""
        features = np.stack([self.features(s) for s in samples])
        targets = [self.targets(s) for s in samples]
        return features, {key: np.stack([t[key] for t in targets]) for key in targets[0]}

    def batches(self, samples: Sequence[Sample], batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(samples), batch_size):
            yield self.batch(samples[start:start + batch_size])


def prefetch(batches: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``batches`` while a background thread reads up to ``depth`` items ahead (Zarr's decompression
    and NumPy release the GIL, so reading overlaps the training step). Errors surface in the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in batches:
                buffer.put(item)
        except BaseException as err:  # handed to the consumer, which re-raises it
            buffer.put(err)
        buffer.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()
