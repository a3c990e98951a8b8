"""What makes a probing task: everything the workflow, the probe job and the tables need to know of one task,
declared once by its module as a :class:`TaskSpec` and registered in :data:`probes.tasks.TASKS`.

Kept free of torch and of the task modules, so planning a workflow imports neither torch nor the nets.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

LINEAR = "linear"  # the closed-form scikit-learn kind every task offers
# Settings every probe kind of every task takes: train and score it this many times, with seeds seed, seed+1, ...
COMMON_PROBE_SETTINGS: dict[str, Any] = {"seeds": 1}


@dataclass(frozen=True)
class NetKind:
    """A torch probe kind of a task: its net class and settings.

    The class is named ``"module:Class"`` and imported only when a job builds it; it is constructed as
    ``Class(in_channels, settings, **arguments)`` with the task's :attr:`TaskSpec.net_arguments`.
    """

    net: str
    architecture: Mapping[str, Any]  # net settings with their defaults
    training: Mapping[str, Any] = field(default_factory=dict)  # this kind's changes to the task's training recipe

    def net_class(self) -> type:
        module, name = self.net.split(":")
        return getattr(importlib.import_module(module), name)


def _no_arguments(clips_store: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """One probing task. ``evaluate`` returns an :class:`probes.result.Evaluation`; see docs/tasks.md."""

    name: str
    views: int  # views per sample by default (the paper's)
    required_arrays: tuple[str, ...]  # clip-store arrays the targets read
    options: Mapping[str, Any]  # task options beyond the frame protocol, shared by every kind
    linear: Mapping[str, Any]  # settings of the linear kind
    training: Mapping[str, Any]  # the torch kinds' training recipe (the reference's)
    nets: Mapping[str, NetKind]  # torch kinds by name
    metrics: Mapping[str, bool]  # every metric the task reports -> whether higher is better
    headline: tuple[str, ...]  # its metrics in the paper's Table 1, in column order
    percent: tuple[str, ...]  # metrics the headline tables show in % (fractions everywhere else)
    make_targets: Callable[..., Any]
    fit_linear: Callable[..., Any]
    loss_fn: Callable[..., Any]
    net_predictions: Callable[..., Any]
    evaluate: Callable[..., Any]
    resample_metrics: Callable[..., Any]  # (ClipStats, (B, n) clip weights) -> {metric: (B,)}, the bootstrap
    net_arguments: Callable[[Any], dict[str, Any]] = _no_arguments  # extra net arguments from the clip store

    @property
    def kinds(self) -> tuple[str, ...]:
        return (LINEAR, *self.nets)

    def net_kind(self, kind: str) -> NetKind:
        if kind not in self.nets:
            raise ValueError(f"task {self.name!r}: unknown probe net kind {kind!r}; known: {sorted(self.nets)}")
        return self.nets[kind]

    def probe_defaults(self, kind: str) -> dict[str, Any]:
        """Default settings of probe ``kind``; an unknown kind is an error listing the task's kinds."""
        if kind == LINEAR:
            return {**COMMON_PROBE_SETTINGS, **self.linear}
        if kind not in self.nets:
            raise ValueError(f"task {self.name!r}: unknown probe kind {kind!r}; known: {list(self.kinds)}")
        net = self.nets[kind]
        return {**COMMON_PROBE_SETTINGS, **self.training, **net.training, **net.architecture}
