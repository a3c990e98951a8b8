"""Fit one probe kind of one task on one source and score it: the part of a probe job that does the science.

Both paths draw their samples from the same frame protocol and read them through the same
:class:`~probes.data.SampleReader`; validation samples are fixed by the protocol's ``val_seed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from clipstore import ClipStore
from probes.data import Sample, SampleReader
from probes.result import ProbeResult
from probes.sampler import FrameProtocol
from probes.sources import Source
from probes.taskspec import LINEAR, TaskSpec

log = logging.getLogger(__name__)


def fit_and_score(task: TaskSpec, kind: str, source: Source, clips_store: ClipStore, train_clips: Sequence[int],
                  val_clips: Sequence[int], settings: dict[str, Any], options: dict[str, Any],
                  seed: int) -> ProbeResult:
    """Train probe ``kind`` of ``task`` on ``train_clips`` and score it on ``val_clips``, with ``seed``."""
    protocol = FrameProtocol.from_options(options)
    lengths = clips_store.frame_counts
    protocol.check_clips({clips_store.clip_ids[c]: int(lengths[c]) for c in [*train_clips, *val_clips]})
    reader = SampleReader(source, clips_store, task.make_targets(options))
    val = Sample.of(protocol.validation_views(val_clips, lengths))

    def training_samples(epoch: int) -> list[Sample]:
        return Sample.of(protocol.training_views(train_clips, lengths, seed, epoch, settings["draws_per_clip"]))

    first_epoch = training_samples(0)  # the linear kinds' training set; tagging buckets come from its labels
    if kind == LINEAR:
        predictions, weights, info = task.fit_linear(reader, first_epoch, val, settings, seed)
        curves: list[dict[str, float]] = []
    else:
        predictions, weights, info, curves = _fit_net(task, kind, reader, training_samples, val, settings,
                                                      task.net_arguments(clips_store), seed=seed)
    evaluation = task.evaluate(predictions, reader, val, first_epoch, options)
    return ProbeResult(
        metrics=evaluation.metrics, clip_stats=evaluation.clip_stats,
        info={**info, **evaluation.info, "train_samples": len(first_epoch), "val_samples": len(val)},
        predictions={"clip_index": np.array([s.clip for s in val]), "views": np.stack([s.views for s in val]),
                     **evaluation.saved},
        weights=weights, curves=curves)


def _fit_net(task: TaskSpec, kind: str, reader: SampleReader, training_samples: Callable[[int], list[Sample]],
             val: list[Sample], settings: dict[str, Any], arguments: dict[str, Any], *,
             seed: int) -> tuple[Any, dict, dict, list]:
    import torch

    from probes.nets import build_probe_net, parameter_count
    from probes.training import choose_device, predict, train

    architecture = {key: settings[key] for key in task.net_kind(kind).architecture}
    training = {key: value for key, value in settings.items() if key not in architecture}
    device = choose_device(training["device"])
    torch.manual_seed(seed)
    net = build_probe_net(kind, task.name, reader.source.channels, architecture, **arguments).to(device)
    log.info("%s %s probe: %d parameters on %s", task.name, kind, parameter_count(net), device)
    run = train(net, reader, train_samples=training_samples, val_samples=val, loss_fn=task.loss_fn(training),
                settings=training, seed=seed, device=device, progress=log.info)
    outputs = predict(net, reader, val, int(training["batch_size"]), device)
    info = {"parameters": parameter_count(net), "device": str(device), "best_epoch": run.best_epoch,
            "epochs_run": len(run.curves), "best_val_loss": run.best_val_loss,
            "data_wait_seconds": round(run.data_seconds, 3), "step_seconds": round(run.step_seconds, 3)}
    weights = {key: value.detach().cpu().contiguous() for key, value in net.state_dict().items()}
    return task.net_predictions(outputs, reader, val), weights, info, run.curves
