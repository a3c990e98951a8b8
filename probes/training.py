"""The training loop of the torch probe kinds (``light``, ``paper``): AdamW, linear warmup then cosine decay,
early stopping on the validation loss (the best epoch's weights are kept), deterministic on CPU.

The loop knows nothing about tasks: it gets a net, a loss function and a :class:`SampleReader`, and records one
row per epoch (losses, learning rate, seconds spent training and waiting for data) for ``curves.csv``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from probes.data import Batch, Sample, SampleReader, prefetch

LossFn = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Generator], torch.Tensor]


def choose_device(requested: str) -> torch.device:
    """``auto`` = the GPU when one is present, else the CPU; anything else is taken literally."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def to_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    features, targets = batch
    return (torch.from_numpy(features).to(device),
            {key: torch.from_numpy(np.ascontiguousarray(value)).to(device) for key, value in targets.items()})


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear from 1/warmup to 1 over the warmup steps, then cosine down to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


@dataclass
class TrainingRun:
    best_epoch: int
    best_val_loss: float
    curves: list[dict[str, float]] = field(default_factory=list)
    data_seconds: float = 0.0
    step_seconds: float = 0.0


def _evaluate_loss(net: torch.nn.Module, reader: SampleReader, samples: Sequence[Sample], loss_fn: LossFn,
                   batch_size: int, device: torch.device, seed: int) -> float:
    net.eval()
    generator = torch.Generator().manual_seed(seed)  # the same pixels every epoch: comparable losses
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in reader.batches(samples, batch_size):
            features, targets = to_tensors(batch, device)
            total += float(loss_fn(net(features), targets, generator)) * len(features)
            count += len(features)
    return total / max(count, 1)


def train(net: torch.nn.Module, reader: SampleReader, *, train_samples: Callable[[int], list[Sample]],
          val_samples: Sequence[Sample], loss_fn: LossFn, settings: Mapping[str, Any], seed: int,
          device: torch.device, progress: Callable[[str], None] | None = None) -> TrainingRun:
    """Train ``net`` in place; on return it holds the weights of the epoch with the lowest validation loss.

    ``train_samples(epoch)`` draws that epoch's samples (fresh views every epoch, reproducible from the seed).
    Stops early after ``patience`` epochs without improvement (0 = never).
    """
    torch.manual_seed(seed)
    epochs, batch_size = int(settings["epochs"]), int(settings["batch_size"])
    first_epoch = train_samples(0)
    steps_per_epoch = math.ceil(len(first_epoch) / batch_size)
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, warmup_cosine(epochs * steps_per_epoch, int(settings["warmup_epochs"] * steps_per_epoch)))
    generator = torch.Generator().manual_seed(seed)
    run = TrainingRun(best_epoch=-1, best_val_loss=math.inf)
    best_state = copy.deepcopy(net.state_dict())
    for epoch in range(epochs):
        started, data_wait, step_time, losses = time.perf_counter(), 0.0, 0.0, []
        net.train()
        samples = first_epoch if epoch == 0 else train_samples(epoch)
        order = np.random.default_rng([seed, epoch, 3]).permutation(len(samples))
        batches = prefetch(reader.batches([samples[i] for i in order], batch_size))
        while True:
            waited = time.perf_counter()
            batch = next(batches, None)
            data_wait += time.perf_counter() - waited
            if batch is None:
                break
            stepped = time.perf_counter()
            features, targets = to_tensors(batch, device)
            loss = loss_fn(net(features), targets, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower 'lr'")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            step_time += time.perf_counter() - stepped
        val_loss = _evaluate_loss(net, reader, val_samples, loss_fn, batch_size, device, seed)
        run.data_seconds += data_wait
        run.step_seconds += step_time
        run.curves.append({"epoch": epoch, "lr": optimiser.param_groups[0]["lr"],
                           "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                           "seconds": round(time.perf_counter() - started, 4), "data_wait_seconds": round(data_wait, 4),
                           "step_seconds": round(step_time, 4)})
        if progress is not None:
            progress(f"epoch {epoch + 1}/{epochs}: train {np.mean(losses):.4f}, val {val_loss:.4f}")
        if val_loss < run.best_val_loss:
            run.best_epoch, run.best_val_loss = epoch, val_loss
            best_state = copy.deepcopy(net.state_dict())
        elif settings["patience"] and epoch - run.best_epoch >= settings["patience"]:
            break
    net.load_state_dict(best_state)
    return run


def predict(net: torch.nn.Module, reader: SampleReader, samples: Sequence[Sample], batch_size: int,
            device: torch.device) -> list[dict[str, np.ndarray]]:
    """The net's outputs for each sample, as float32 NumPy arrays (one dict per sample)."""
    net.eval()
    outputs: list[dict[str, np.ndarray]] = []
    with torch.no_grad():
        for batch in reader.batches(samples, batch_size):
            features, _ = to_tensors(batch, device)
            result = {key: value.float().cpu().numpy() for key, value in net(features).items()}
            outputs += [{key: value[i] for key, value in result.items()} for i in range(len(features))]
    return outputs
