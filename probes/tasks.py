"""The task registry: what each task needs from the clip store, its options, and its probe kinds.

Every task offers three probe kinds on one data path (:mod:`probes.data`, views from :mod:`probes.sampler`):
``linear`` (scikit-learn, closed form), ``light`` (a small torch head) and ``paper`` (the reference
architecture at the reference sizes). Task options hold the frame protocol and the task's own parameters;
they are shared by every probe kind so kinds are compared on the same views and labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from probes import geometry, instance, tagging
from probes.netconfig import LIGHT_DEFAULTS, PAPER_DEFAULTS

PROBE_KINDS = ("linear", "light", "paper")
PROTOCOL_DEFAULTS: dict[str, Any] = {"views": 8, "min_gap": 5, "window": 76, "snap_stride": 4, "val_seed": 0}


@dataclass(frozen=True)
class Task:
    name: str
    module: ModuleType  # make_targets, fit_linear, loss_fn, net_predictions, evaluate
    options: Mapping[str, Any]  # frame protocol + task options, shared by every probe kind
    probes: Mapping[str, Mapping[str, Any]]  # probe kind -> default settings

    @property
    def required_arrays(self) -> tuple[str, ...]:
        return self.module.REQUIRED_ARRAYS


# The reference's training recipe (TRAINING_DEFAULTS of each task) is tuned for the paper nets (24-385M
# parameters, thousands of clips); a light head on a small dataset needs a larger step and fewer pixels.
LIGHT_TRAINING: dict[str, dict[str, Any]] = {
    "tagging": {"lr": 1e-3, "epochs": 30, "patience": 8},
    "instance": {"lr": 1e-3, "epochs": 20, "patience": 5, "pixels_per_sample": 512},
    "geometry": {"lr": 1e-3, "epochs": 40, "patience": 8},
}


def _task(name: str, module: ModuleType, views: int) -> Task:
    torch_kinds = {"light": {**module.TRAINING_DEFAULTS, **LIGHT_TRAINING[name], **LIGHT_DEFAULTS[name]},
                   "paper": {**module.TRAINING_DEFAULTS, **PAPER_DEFAULTS[name]}}
    return Task(name, module, {**PROTOCOL_DEFAULTS, "views": views, **module.OPTIONS},
                {"linear": module.LINEAR_DEFAULTS, **torch_kinds})


TASKS: dict[str, Task] = {
    "tagging": _task("tagging", tagging, views=8),
    "instance": _task("instance", instance, views=8),
    "geometry": _task("geometry", geometry, views=4),
}


class TaskConfigError(ValueError):
    """A ``tasks:`` entry that names an unknown task, probe kind or setting."""


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TaskConfigError(f"{what}: unknown setting(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def resolve_task(name: str, entry: Mapping[str, Any]) -> tuple[Task, dict[str, Any], dict[str, dict[str, Any]]]:
    """(task, task options, {probe kind: settings}) for one ``tasks:`` entry, defaults filled in."""
    if name not in TASKS:
        raise TaskConfigError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    task = TASKS[name]
    options = _merge(task.options, entry.get("options"), f"task {name!r} options")
    _check_protocol(name, options)
    probes = {}
    for kind, settings in (entry.get("probes") or {}).items():
        if kind not in task.probes:
            raise TaskConfigError(f"task {name!r}: unknown probe kind {kind!r}; known: {sorted(task.probes)}")
        probes[kind] = _merge(task.probes[kind], settings, f"task {name!r}, probe {kind!r}")
    if not probes:
        raise TaskConfigError(f"task {name!r}: no probes; add e.g. 'probes: {{linear: {{}}}}'")
    return task, options, probes


def _check_protocol(name: str, options: Mapping[str, Any]) -> None:
    from probes.sampler import FrameProtocol, SamplerError

    try:
        FrameProtocol.from_options(options)
    except SamplerError as err:
        raise TaskConfigError(f"task {name!r}: {err}") from None
