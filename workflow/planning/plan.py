"""From a validated config to the workflow's jobs: datasets, resolved models, fusions, stores and probe runs.

Everything the Snakefile needs to know is computed here once, at parse time, so a config mistake (unknown
family, layer out of range, missing dataset root, a task needing an array a dataset lacks, a fusion of
sources nobody extracts or whose frames never meet) fails before any job runs, with one message naming the
culprit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from extractors.ids import SourceId
from extractors.job import num_shards, shard_clips
from extractors.registry import ModelConfig, resolve_model
from probes.fusion import Fusion, FusionError, common_frames
from probes.sampler import FrameProtocol, SamplerError
from probes.tasks import resolve_task
from probes.taskspec import TaskSpec
from probes.uncertainty import BootstrapSettings
from workflow.planning.config import FEATURE_INDEX, FEATURES, PROBE, PlanError, rule_token
from workflow.planning.datasets import DatasetPlan, plan_dataset
from workflow.planning.resources import Resources, resource_keys
from workflow.planning.tiny import expect_tiny_models, workflow_checkpoint


@dataclass(frozen=True)
class TaskPlan:
    task: TaskSpec
    options: Mapping[str, Any]
    probes: Mapping[str, Mapping[str, Any]]
    datasets: tuple[str, ...]
    models: Mapping[str, tuple[str, ...]]  # probe kind -> models and fusions whose sources it probes


def _split_models(name: str, entry: Mapping[str, Any], known: Mapping[str, Any]) -> tuple[dict, dict]:
    """(probe settings without ``models``, probe kind -> models to probe): ``models:`` in a probe kind's
    entry limits it to some models or fusions (e.g. the slower torch kinds to a few), default all."""
    settings, models = {}, {}
    for kind, given in (entry.get("probes") or {}).items():
        given = dict(given or {})
        chosen = given.pop("models", None) or list(known)
        unknown = [m for m in chosen if m not in known]
        if unknown:
            raise PlanError(f"task {name!r}, probe {kind!r}: unknown model(s) {unknown}; known models and "
                            f"fusions: {sorted(known)}")
        settings[kind], models[kind] = given, tuple(chosen)
    return settings, models


def _check_rule_tokens(models: Iterable[str]) -> None:
    """Two model names that become one rule name (``pix-1``, ``pix_1``) are refused, naming both."""
    seen: dict[str, str] = {}
    for name in models:
        token = rule_token(name)
        if token in seen:
            raise PlanError(f"models {seen[token]!r} and {name!r} differ only in punctuation, and both become "
                            f"rule extract_{token}; rename one")
        seen[token] = name


def _with_compression(entry: Mapping[str, Any], default: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model entry with the config's default codec where it names none of its own."""
    if "compression" in entry or default is None:
        return dict(entry)
    return {**entry, "compression": dict(default)}


def _without_resources(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A model entry as its family reads it: resources are the scheduler's, never an extraction parameter."""
    return {key: value for key, value in entry.items() if key != "resources"}


def _model_sources(model: ModelConfig) -> list[SourceId]:
    return [SourceId(model.name, token, layer, capture) for token in model.timestep_tokens
            for layer, capture in model.feature_keys]


class WorkflowPlan:
    """The resolved config: what to generate, extract, fuse, probe and aggregate."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.seed = int(config.get("seed", 0))
        extraction = config.get("extraction") or {}
        self.clips_per_shard = int(extraction.get("clips_per_shard", 16))
        self.resources = Resources(config.get("resources"))
        self.bootstrap = BootstrapSettings.from_config(config.get("bootstrap"), self.seed)
        self._extractors: dict[str, Any] = {}
        self.datasets = {n: plan_dataset(n, e, self.seed) for n, e in config["datasets"].items()}
        expect_tiny_models(config["models"].values())
        self.model_entries = {n: _with_compression(e, extraction.get("compression"))
                              for n, e in config["models"].items()}
        self.models = {n: resolve_model(n, _without_resources(e), seed=self.seed)
                       for n, e in self.model_entries.items()}
        _check_rule_tokens(self.models)
        self.fusions = {n: self._plan_fusion(n, e) for n, e in (config.get("fusions") or {}).items()}
        self._check_fusion_frames()
        self.tasks = {n: self._plan_task(n, e) for n, e in config["tasks"].items()}

    def _plan_task(self, name: str, entry: Mapping[str, Any]) -> TaskPlan:
        settings, models = _split_models(name, entry, {**self.models, **self.fusions})
        task, options, probes = resolve_task(name, {**entry, "probes": settings})
        datasets = tuple(self.datasets if entry.get("datasets") is None else entry["datasets"])  # [] = none
        for dataset in datasets:
            if dataset not in self.datasets:
                raise PlanError(f"task {name!r}: unknown dataset {dataset!r}; known: {sorted(self.datasets)}")
            missing = [a for a in task.required_arrays if a not in self.datasets[dataset].arrays]
            if missing:
                raise PlanError(f"task {name!r} needs array(s) {missing} that dataset {dataset!r} "
                                f"({self.datasets[dataset].store}) lacks")
            protocol = FrameProtocol.from_options(options)
            self._check_protocol(name, protocol, self.datasets[dataset])
            for model in sorted(self._models_behind(models)):
                self._check_inputs(model, self.datasets[dataset])
                self._check_coverage(name, protocol, model, self.datasets[dataset])
        return TaskPlan(task, options, probes, datasets, models)

    @staticmethod
    def _check_protocol(task: str, protocol: FrameProtocol, dataset: DatasetPlan) -> None:
        """The protocol fits every clip (when their lengths are known) and samples only frames that keep
        ground truth (``ground_truth: query``)."""
        try:
            if dataset.lengths:
                protocol.check_clips(dataset.lengths)
        except SamplerError as err:
            raise PlanError(f"task {task!r} on dataset {dataset.name!r}: {err}") from None
        if dataset.ground_truth_frames is None:
            return
        longest = dataset.num_frames or protocol.window
        lacking = sorted(protocol.reachable(longest) - set(dataset.ground_truth_frames))
        if lacking:
            span = min(protocol.window, protocol.usable(longest))
            kept = [f for f in dataset.ground_truth_frames if f < span]
            raise PlanError(f"task {task!r} on dataset {dataset.name!r}: the frame protocol can sample frames "
                            f"{lacking[:8]} but the dataset keeps ground truth only at {kept} (ground_truth: "
                            f"query); use ground_truth: all, or snap_stride 4 with window <= context_frames")

    def _models_behind(self, models: Mapping[str, tuple[str, ...]]) -> set[str]:
        """The models a task's probe kinds read, directly or as branches of fusions."""
        names = {m for chosen in models.values() for m in chosen}
        return {m for m in names if m in self.models} | {
            branch.model for m in names if m in self.fusions for branch in self.fusions[m].sources}

    def _check_coverage(self, task: str, protocol: FrameProtocol, model: str, dataset: DatasetPlan) -> None:
        """Every frame the protocol can sample has a feature frame of ``model``, for each clip length of the
        dataset (when known and when the model's options fix its frames)."""
        for length in sorted(set((dataset.lengths or {}).values())):
            frames = self.extractor(model).expected_frame_index(length)
            if frames is None:
                continue  # the extraction job names the clip it cannot take
            lacking = sorted(protocol.reachable(length) - {int(f) for f in frames})
            if lacking:
                raise PlanError(f"task {task!r} on dataset {dataset.name!r}: model {model!r} has no feature frame "
                                f"for clip frame(s) {lacking[:8]} that the frame protocol can sample in a clip of "
                                f"{length} frames (its feature frames: {[int(f) for f in frames]}); change the "
                                f"protocol (snap_stride, window) or the model's frames")

    def _check_inputs(self, model: str, dataset: DatasetPlan) -> None:
        lacking = [a for a in self.extractor(model).inputs if a not in dataset.arrays]
        if lacking:
            raise PlanError(f"model {model!r} reads array(s) {lacking} that dataset {dataset.name!r} "
                            f"({dataset.store}) lacks")

    def extractor(self, model: str) -> Any:
        """The model's extractor, built once (no weights are loaded)."""
        if model not in self._extractors:
            self._extractors[model] = self.models[model].build(self.seed)
        return self._extractors[model]

    # --- resources ------------------------------------------------------------------------------------
    def extraction_resources(self, model: str) -> dict[str, Any]:
        weightless = not type(self.extractor(model)).takes_checkpoint
        return self.resources.extraction(self.model_entries[model], weightless=weightless)

    def probe_resources(self, task: str, kind: str) -> dict[str, Any]:
        plan = self.tasks[task]
        return self.resources.probe(kind, plan.probes[kind], torch_kind=kind in plan.task.nets)

    def dataset_resources(self, dataset: str) -> dict[str, Any]:
        return self.resources.stage("dataset", threads=self.datasets[dataset].entry.get("threads"))

    def probe_resource_keys(self) -> list[str]:
        return resource_keys([self.probe_resources(t, k) for t, plan in self.tasks.items() for k in plan.probes])

    # --- fusions --------------------------------------------------------------------------------------
    def _plan_fusion(self, name: str, entry: Mapping[str, Any]) -> Fusion:
        if name in self.models:
            raise PlanError(f"fusion {name!r}: the name is taken by a model; fusions and models share one name "
                            f"space (their features live in results/features/<dataset>/<name>/)")
        try:
            fusion = Fusion.from_config(name, entry)
        except FusionError as err:
            raise PlanError(str(err)) from None
        for branch in fusion.sources:
            self._check_configured(name, branch)
        return fusion

    def _check_configured(self, fusion: str, source: SourceId) -> None:
        model = self.models.get(source.model)
        if model is None:
            raise PlanError(f"fusion {fusion!r}: source {str(source)!r} names no configured model; models: "
                            f"{sorted(self.models)}")
        offered = [str(s) for s in _model_sources(model)]
        if str(source) not in offered:
            raise PlanError(f"fusion {fusion!r}: source {str(source)!r} is not extracted; model "
                            f"{model.name!r} provides {offered}")

    def _check_fusion_frames(self) -> None:
        """Branches must share a frame on every dataset, where the options alone fix their frame maps."""
        for dataset in self.datasets.values():
            if dataset.num_frames is None:
                continue  # clip lengths are known once the dataset job has run
            for fusion in self.fusions.values():
                maps = {}
                for branch in fusion.sources:
                    maps[str(branch)] = self.extractor(branch.model).expected_frame_index(dataset.num_frames)
                if all(m is not None for m in maps.values()):
                    try:
                        common_frames(fusion.name, maps)
                    except FusionError as err:
                        raise PlanError(f"dataset {dataset.name!r}: {err}") from None

    @property
    def materialised_fusions(self) -> list[str]:
        return [name for name, fusion in self.fusions.items() if fusion.materialise]

    # --- feature stores -------------------------------------------------------------------------------
    def num_shards(self, dataset: str) -> int:
        return num_shards(self.datasets[dataset].num_clips, self.clips_per_shard)

    def shard_paths(self, dataset: str, model: str, timestep: str) -> list[str]:
        return [FEATURES.format(dataset=dataset, model=model, timestep=timestep, shard=k)
                for k in range(self.num_shards(dataset))]

    def model(self, name: str) -> ModelConfig:
        return self.models[name]

    def checkpoint_inputs(self, model: str) -> list[str]:
        """The model's checkpoint as a job input when it is a local directory (or a tiny demo model that
        the tiny_model rule builds); hub ids are not files and are left to the extractor."""
        checkpoint = self.models[model].checkpoint
        return [checkpoint] if checkpoint is not None and workflow_checkpoint(checkpoint) else []

    # --- sources --------------------------------------------------------------------------------------
    def sources(self, names: Iterable[str] | None = None) -> list[SourceId]:
        """The sources of models and fusions (default: all): every (timestep, layer) of a model, and a
        fusion's one source."""
        chosen = [*self.models, *self.fusions] if names is None else names
        found = []
        for name in chosen:
            if name in self.fusions:
                found.append(self.fusions[name].id)
                continue
            found += _model_sources(self.models[name])
        return found

    def source_spec(self, dataset: str, source: str) -> dict[str, Any]:
        """How a probe job opens ``source`` on ``dataset`` (:func:`probes.sources.open_source`): a cached
        array's stores (a materialised fusion's included), or a fusion computed on the fly."""
        parsed = SourceId.parse(source)
        fusion = self.fusions.get(parsed.model)
        if fusion is not None and not fusion.materialise:
            return self.fusion_spec(dataset, fusion.name)
        return {"id": str(parsed), "stores": self.shard_paths(dataset, parsed.model, parsed.timestep)}

    def fusion_spec(self, dataset: str, fusion: str, shard: int | None = None) -> dict[str, Any]:
        """The spec that computes ``fusion`` from its branches' stores: all of them, or one shard's."""
        def stores(branch: SourceId) -> list[str]:
            paths = self.shard_paths(dataset, branch.model, branch.timestep)
            return paths if shard is None else [paths[shard]]

        spec = self.fusions[fusion]
        return {"id": str(spec.id), "fusion": spec.to_json(),
                "branches": [{"id": str(branch), "stores": stores(branch)} for branch in spec.sources]}

    def shard_clip_index(self, dataset: str, shard: int) -> list[int]:
        return shard_clips(self.datasets[dataset].num_clips, self.clips_per_shard, shard)

    # --- probes ---------------------------------------------------------------------------------------
    def probe_dirs(self) -> list[str]:
        return [PROBE.format(dataset=d, task=name, source=str(s), probe=kind)
                for name, plan in self.tasks.items() for d in plan.datasets
                for kind in plan.probes for s in self.sources(plan.models[kind])]

    def probe_inputs(self, dataset: str, source: str) -> dict[str, Any]:
        """The clip store and the feature index of every cached array the source reads (a fusion's
        branches, for one computed on the fly)."""
        spec = self.source_spec(dataset, source)
        ids = [branch["id"] for branch in spec["branches"]] if "fusion" in spec else [spec["id"]]
        return {"clip_store": self.datasets[dataset].store,
                "features": [self.feature_index(dataset, SourceId.parse(i)) for i in ids]}

    def feature_index(self, dataset: str, source: SourceId) -> str:
        return FEATURE_INDEX.format(dataset=dataset, model=source.model, timestep=source.timestep)

    def indexed_arrays(self) -> list[str]:
        """Names whose arrays get a feature index: every model and every materialised fusion."""
        return [*self.models, *self.materialised_fusions]
