"""The task registry: what each task needs from the clip store, its options, and its probe kinds.

Adding a probe kind means adding an entry here; the workflow picks it up from the config's ``tasks:``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probes import depth, tagging


@dataclass(frozen=True)
class ProbeKind:
    run: Callable[..., Any]
    defaults: Mapping[str, Any]


@dataclass(frozen=True)
class Task:
    name: str
    required_arrays: tuple[str, ...]
    probes: Mapping[str, ProbeKind]
    options: Mapping[str, Any] = field(default_factory=dict)  # task-level options passed to every probe


TASKS: dict[str, Task] = {
    "depth": Task("depth", depth.REQUIRED_ARRAYS, {"linear": ProbeKind(depth.run, depth.DEFAULTS)}),
    "tagging": Task("tagging", tagging.REQUIRED_ARRAYS, {"linear": ProbeKind(tagging.run, tagging.DEFAULTS)},
                    options={"min_pixels": 200, "min_frames": 1}),
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
    probes = {}
    for kind, settings in (entry.get("probes") or {}).items():
        if kind not in task.probes:
            raise TaskConfigError(f"task {name!r}: unknown probe kind {kind!r}; known: {sorted(task.probes)}")
        probes[kind] = _merge(task.probes[kind].defaults, settings, f"task {name!r}, probe {kind!r}")
    if not probes:
        raise TaskConfigError(f"task {name!r}: no probes; add e.g. 'probes: {{linear: {{}}}}'")
    return task, options, probes
