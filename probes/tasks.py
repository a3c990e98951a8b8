"""The task registry: every probing task, its options and its probe kinds (docs/tasks.md).

A task is a module that declares one :class:`~probes.taskspec.TaskSpec` (``SPEC``); registering it is adding
the module to :data:`TASKS` below, and nothing else. Every task offers the ``linear`` kind (scikit-learn,
closed form) and the torch kinds its spec names (``light``, ``paper``), all on one data path
(:mod:`probes.data`, views from :mod:`probes.sampler`). Task options hold the frame protocol and the task's
own parameters; they are shared by every probe kind, so kinds are compared on the same views and labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probes import geometry, instance, tagging
from probes.taskspec import TaskSpec

TASKS: dict[str, TaskSpec] = {module.SPEC.name: module.SPEC for module in (tagging, instance, geometry)}

PROTOCOL_DEFAULTS: dict[str, Any] = {"views": 8, "min_gap": 5, "window": 76, "snap_stride": 4, "val_seed": 0}


class TaskConfigError(ValueError):
    """A ``tasks:`` entry that names an unknown task, probe kind or setting."""


def task_spec(name: str) -> TaskSpec:
    """The registered task ``name``; an unknown name is an error listing the known ones."""
    if name not in TASKS:
        raise TaskConfigError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def task_options(spec: TaskSpec) -> dict[str, Any]:
    """Default options of a task: the frame protocol at the task's views, and its own options."""
    return {**PROTOCOL_DEFAULTS, "views": spec.views, **spec.options}


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TaskConfigError(f"{what}: unknown setting(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def resolve_task(name: str, entry: Mapping[str, Any]) -> tuple[TaskSpec, dict[str, Any], dict[str, dict[str, Any]]]:
    """(task, task options, {probe kind: settings}) for one ``tasks:`` entry, defaults filled in."""
    spec = task_spec(name)
    options = _merge(task_options(spec), entry.get("options"), f"task {name!r} options")
    _check_protocol(name, options)
    probes = {}
    for kind, settings in (entry.get("probes") or {}).items():
        try:
            defaults = spec.probe_defaults(kind)
        except ValueError as err:
            raise TaskConfigError(str(err)) from None
        probes[kind] = _merge(defaults, settings, f"task {name!r}, probe {kind!r}")
    if not probes:
        raise TaskConfigError(f"task {name!r}: no probes; add e.g. 'probes: {{linear: {{}}}}'")
    for kind, settings in probes.items():
        seeds = settings["seeds"]
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise TaskConfigError(f"task {name!r}, probe {kind!r}: seeds={seeds!r} must be a positive integer")
    return spec, options, probes


def _check_protocol(name: str, options: Mapping[str, Any]) -> None:
    from probes.sampler import FrameProtocol, SamplerError

    try:
        FrameProtocol.from_options(options)
    except SamplerError as err:
        raise TaskConfigError(f"task {name!r}: {err}") from None
