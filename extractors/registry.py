"""The one place that knows every model family, and how a config entry becomes a resolved model.

Families are imported by name only when used, so planning a workflow never imports torch. A family module
must keep heavy imports inside its ``load`` so that building an extractor (to count layers) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from extractors.base import Extractor
from extractors.captures import OUTPUT, CaptureError, expand_heads, feature_keys, normalise_captures
from extractors.codecs import normalise_compression
from extractors.ids import check_name, timestep_token
from extractors.layers import resolve_layers
from extractors.presets import UNAVAILABLE, Preset

# Modules holding extractor families, each listing its classes in ``EXTRACTORS``. Everything else (family
# names, presets, tiny models, the schema's choices) is read from those classes. Family modules import torch
# and the model libraries only inside methods, so collecting them stays cheap.
FAMILY_MODULES: tuple[str, ...] = (
    "extractors.baselines", "extractors.calibration",
    "extractors.wan", "extractors.wan22", "extractors.cogvideox", "extractors.aether", "extractors.hunyuan",
    "extractors.ltx", "extractors.mochi",
    "extractors.qwen", "extractors.internvl", "extractors.towers",
)


class ModelConfigError(ValueError):
    """A model entry of the config that cannot be resolved."""


@cache
def _families() -> dict[str, type[Extractor]]:
    families: dict[str, type[Extractor]] = {}
    for module_name in FAMILY_MODULES:
        for cls in importlib.import_module(module_name).EXTRACTORS:
            if cls.family in families:
                raise RuntimeError(f"family {cls.family!r} is defined by {families[cls.family].__module__} and "
                                   f"{module_name}")
            families[cls.family] = cls
    return families


def families() -> dict[str, type[Extractor]]:
    """Every extractor family by its config name."""
    return dict(_families())


def presets() -> dict[str, Preset]:
    """Every family's presets by name, and the listed models without a loadable route (refused, saying why)."""
    return {**{name: preset for cls in _families().values() for name, preset in cls.presets.items()},
            **UNAVAILABLE}


def apply_preset(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry with its preset's values filled in (the entry's own keys and options win)."""
    if "preset" not in entry:
        return dict(entry)
    preset_name = entry["preset"]
    known = presets()
    if preset_name not in known:
        raise ModelConfigError(f"model {name!r}: unknown preset {preset_name!r}; known: {sorted(known)}")
    if known[preset_name].unavailable:
        raise ModelConfigError(f"model {name!r}: preset {preset_name!r} is unavailable: "
                               f"{known[preset_name].unavailable}")
    base = known[preset_name].entry()
    merged = {**base, **{k: v for k, v in entry.items() if k != "preset"}}
    merged["options"] = {**base["options"], **entry.get("options", {})}
    return merged


def _check_preset_facts(name: str, preset_name: str, checkpoint: str | None, extractor: Extractor) -> None:
    preset = presets()[preset_name]
    if extractor.options.get("route") != preset.options.get("route"):
        return  # another route of the checkpoint (e.g. the vision tower): the preset's counts do not apply
    found = extractor.num_layers(), extractor.channels()
    if found != (preset.blocks, preset.channels):
        raise ModelConfigError(f"model {name!r}: checkpoint {checkpoint!r} has {found[0]} blocks of {found[1]} "
                               f"channels, but preset {preset_name!r} is {preset.blocks} blocks of {preset.channels}")


def extractor_class(family: str, *, model: str = "model") -> type[Extractor]:
    """The extractor class of ``family``; an unknown family is an error listing the known ones."""
    known = _families()
    if family not in known:
        raise ModelConfigError(f"model {model!r}: unknown model family {family!r}; known: {sorted(known)}")
    return known[family]


@dataclass(frozen=True)
class ModelConfig:
    """A config entry resolved against its family: concrete layers, timesteps and captures (tokens of
    :mod:`extractors.captures`), and how its features are stored (``compression``: a normalised spec of
    :mod:`extractors.codecs`; None = lossless)."""

    name: str
    family: str
    paradigm: str
    layers: tuple[int, ...]
    timesteps: tuple[int | None, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    random_init: bool = False
    compression: Mapping[str, Any] | None = None
    captures: tuple[str, ...] = (OUTPUT,)

    def build(self, seed: int) -> Extractor:
        cls = extractor_class(self.family, model=self.name)
        return cls(self.name, self.options, seed=seed, checkpoint=self.checkpoint, captures=self.captures)

    @property
    def feature_keys(self) -> tuple[tuple[int, str], ...]:
        """Every (layer, capture) array an extraction of this model stores."""
        return feature_keys(self.layers, self.captures)

    @property
    def timestep_tokens(self) -> list[str]:
        return [timestep_token(t) for t in self.timesteps]

    def to_json(self) -> dict[str, Any]:
        """The extraction job's parameters and its stores' fingerprint. Lossless adds no key, so the stores
        and jobs of every model written before compression existed stay valid."""
        data = {"name": self.name, "family": self.family, "paradigm": self.paradigm, "layers": list(self.layers),
                "timesteps": list(self.timesteps), "options": dict(self.options), "checkpoint": self.checkpoint,
                "random_init": self.random_init}
        if self.compression is not None:
            data["compression"] = dict(self.compression)
        if self.captures != (OUTPUT,):  # block outputs alone add no key: earlier stores stay valid
            data["captures"] = list(self.captures)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        return cls(**{**data, "layers": tuple(data["layers"]), "timesteps": tuple(data["timesteps"]),
                      "captures": tuple(data.get("captures", (OUTPUT,)))})


def _resolve_timesteps(name: str, entry: Mapping[str, Any], uses_timestep: bool) -> tuple[int | None, ...]:
    timesteps = entry.get("timesteps")
    if not uses_timestep:
        if timesteps is not None:
            raise ModelConfigError(f"model {name!r}: family {entry['family']!r} takes no noise; "
                                   f"remove 'timesteps'")
        return (None,)
    if not timesteps:
        raise ModelConfigError(f"model {name!r}: family {entry['family']!r} needs 'timesteps' (0 = clean)")
    return tuple(sorted(set(timesteps)))


def resolve_model(name: str, entry: Mapping[str, Any], *, seed: int = 0) -> ModelConfig:
    """Resolve one ``models:`` entry: family known, options valid, layers in range, timesteps sensible, and
    ``compression`` (how its features are stored) a valid spec."""
    try:
        check_name(name, "model")
    except ValueError as err:
        raise ModelConfigError(str(err)) from None
    preset_name = entry.get("preset")
    entry = apply_preset(name, entry)
    family = entry.get("family")
    cls = extractor_class(family, model=name)
    kinds = _capture_kinds(name, entry)
    extractor = cls(name, entry.get("options", {}), seed=seed, checkpoint=entry.get("checkpoint"), captures=kinds)
    spec = entry.get("layers", "all")
    named = extractor.named_layers()
    if isinstance(spec, str) and spec in named:
        spec = list(named[spec])
    layers = resolve_layers(spec, extractor.num_layers(), model=name, named=sorted(named))
    timesteps = _resolve_timesteps(name, entry, cls.uses_timestep)
    for timestep in timesteps:
        if timestep is not None:
            extractor.check_timestep(timestep)
    if preset_name is not None:
        _check_preset_facts(name, preset_name, entry.get("checkpoint"), extractor)
    compression = normalise_compression(entry.get("compression"), owner=f"model {name!r}")
    try:
        captures = expand_heads(kinds, entry.get("attention_heads", "concat"), extractor.attention_heads(),
                                model=name)
    except CaptureError as err:
        raise ModelConfigError(str(err)) from None
    return ModelConfig(name, family, cls.paradigm, layers, timesteps, dict(entry.get("options", {})),
                       entry.get("checkpoint"), extractor.random_init, compression, captures)


def _capture_kinds(name: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    try:
        return normalise_captures(entry.get("capture"), model=name)
    except CaptureError as err:
        raise ModelConfigError(str(err)) from None
