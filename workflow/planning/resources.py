"""What each job asks of the machine or the scheduler: threads, memory, runtime, GPUs, and any Slurm setting.

Declared once, in the config's ``resources:`` section (per stage, per probe kind) and in a model's own
``resources:`` (per model); :data:`DEFAULTS` below fills what a config leaves out. Every rule reads its job's
resources from here, so ``snakemake --cores N`` and ``--profile slurm`` see the same numbers, and a profile
needs no rule names. Two facts are not settings: a weightless source (a baseline, the oracle, noise) never
asks for a GPU, and a probe asks for one exactly when its kind trains with torch on ``device`` auto or cuda.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys every job has; any other key (slurm_partition, slurm_account, gres, gpu_model, constraint,
# slurm_extra, ...) is passed to Snakemake as given.
CORE_KEYS = ("threads", "mem_mb", "runtime", "gpu")

JOB = dict[str, Any]

DEFAULTS: dict[str, JOB] = {
    "dataset": {"threads": 1, "mem_mb": 16000, "runtime": 240, "gpu": 0},
    "tiny_model": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    # A model family's extraction: a GPU, host memory for the checkpoint's CPU copy, a shard of clips.
    "extract": {"threads": 8, "mem_mb": 64000, "runtime": 240, "gpu": 1},
    "fuse": {"threads": 1, "mem_mb": 16000, "runtime": 60, "gpu": 0},
    "aggregate": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    "plots": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
}
PROBE_DEFAULTS: dict[str, JOB] = {
    # scikit-learn, closed form: minutes; profiles/slurm runs 10 in one Slurm job, one after another
    "linear": {"threads": 1, "mem_mb": 8000, "runtime": 20, "gpu": 0},
    "light": {"threads": 2, "mem_mb": 16000, "runtime": 120, "gpu": 1},
    "paper": {"threads": 4, "mem_mb": 32000, "runtime": 480, "gpu": 1},
}
STAGES = (*DEFAULTS, "probe")


class Resources:
    """Each job's resources from the config's ``resources:`` section over :data:`DEFAULTS`."""

    def __init__(self, section: Mapping[str, Any] | None) -> None:
        section = dict(section or {})
        self.stages = {stage: {**DEFAULTS[stage], **(section.get(stage) or {})} for stage in DEFAULTS}
        given = section.get("probe") or {}
        self.probe_kinds = {kind: {**PROBE_DEFAULTS.get(kind, PROBE_DEFAULTS["light"]), **(given.get(kind) or {})}
                            for kind in {*PROBE_DEFAULTS, *given}}

    def stage(self, stage: str, **override: Any) -> JOB:
        """A stage's job (dataset, tiny_model, fuse, aggregate, plots), with per-job overrides."""
        return {**self.stages[stage], **{k: v for k, v in override.items() if v is not None}}

    def extraction(self, model: Mapping[str, Any], *, weightless: bool) -> JOB:
        """A model's extraction job: the stage's resources, then the model's own ``resources:``."""
        job = {**self.stages["extract"], **(model.get("resources") or {})}
        return _without_gpu(job) if weightless else job  # baselines, the oracle, noise: CPU, whatever is set

    def probe(self, kind: str, settings: Mapping[str, Any], *, torch_kind: bool) -> JOB:
        """A probe job of ``kind``: a GPU only for a torch kind whose ``device`` may be a GPU."""
        job = dict(self.probe_kinds.get(kind, PROBE_DEFAULTS["light"]))
        if not torch_kind or settings.get("device", "auto") == "cpu":
            return _without_gpu(job)
        return job


def _without_gpu(job: JOB) -> JOB:
    """``job`` asking for no GPU by any route: no ``gpu``, no ``gpu_model``, no ``gres`` naming a GPU (the
    recipe for clusters that take only --gres sets it next to ``gpu: 0``)."""
    return {**{key: value for key, value in job.items()
               if key != "gpu_model" and not (key == "gres" and "gpu" in str(value))}, "gpu": 0}


def resource_keys(jobs: list[JOB]) -> list[str]:
    """The resource keys (threads excepted) some of ``jobs`` set, in a stable order."""
    extra = sorted({key for job in jobs for key in job} - set(CORE_KEYS))
    return ["mem_mb", "runtime", "gpu", *extra]
