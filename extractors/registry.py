"""The one place that knows every model family, and how a config entry becomes a resolved model.

Families are imported by name only when used, so planning a workflow never imports torch. A family module
must keep heavy imports inside its ``load`` so that building an extractor (to count layers) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extractors.base import Extractor
from extractors.layers import resolve_layers

FAMILIES: dict[str, str] = {
    "pixels": "extractors.baselines:PixelsExtractor",
    "random-patch": "extractors.baselines:RandomPatchExtractor",
    "wan-t2v": "extractors.wan:WanT2VExtractor",
    "wan-i2v": "extractors.wan:WanI2VExtractor",
    "cogvideox-t2v": "extractors.cogvideox:CogVideoXT2VExtractor",
    "cogvideox-i2v": "extractors.cogvideox:CogVideoXI2VExtractor",
}


class ModelConfigError(ValueError):
    """A model entry of the config that cannot be resolved."""


@dataclass(frozen=True)
class Preset:
    """The paper's facts about one checkpoint; a config entry ``preset: NAME`` starts from these.

    ``layers`` are the paper's probing layers (18 for ScanNet semantics, 20 for DL3DV geometry) and
    ``timestep`` the value fed to the denoiser that the paper's "index 749" means for the family.
    ``blocks`` and ``channels`` are checked against the checkpoint's transformer config.
    """

    family: str
    hub_id: str
    frames: int
    resolution: tuple[int, int]
    blocks: int
    channels: int
    timestep: int
    max_text_tokens: int
    layers: tuple[int, ...] = (18, 20)

    def entry(self) -> dict[str, Any]:
        return {"family": self.family, "checkpoint": self.hub_id, "layers": list(self.layers),
                "timesteps": [self.timestep],
                "options": {"frames": self.frames, "resolution": list(self.resolution),
                            "max_text_tokens": self.max_text_tokens}}


def _wan(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    return Preset(family, hub_id, 81, (480, 832), blocks, channels, timestep=500, max_text_tokens=512)


def _cogvideox(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    return Preset(family, hub_id, 49, (480, 720), blocks, channels, timestep=250, max_text_tokens=226)


PRESETS: dict[str, Preset] = {
    "Wan2.1-T2V-1.3B": _wan("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan-t2v", 30, 1536),
    "Wan2.1-T2V-14B": _wan("Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan-t2v", 40, 5120),
    "Wan2.1-I2V-14B-480P": _wan("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan-i2v", 40, 5120),
    "CogVideoX-2b": _cogvideox("THUDM/CogVideoX-2b", "cogvideox-t2v", 30, 1920),
    "CogVideoX-5b": _cogvideox("THUDM/CogVideoX-5b", "cogvideox-t2v", 42, 3072),
    "CogVideoX-5b-I2V": _cogvideox("THUDM/CogVideoX-5b-I2V", "cogvideox-i2v", 42, 3072),
}


def apply_preset(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry with its preset's values filled in (the entry's own keys and options win)."""
    if "preset" not in entry:
        return dict(entry)
    preset_name = entry["preset"]
    if preset_name not in PRESETS:
        raise ModelConfigError(f"model {name!r}: unknown preset {preset_name!r}; known: {sorted(PRESETS)}")
    base = PRESETS[preset_name].entry()
    merged = {**base, **{k: v for k, v in entry.items() if k != "preset"}}
    merged["options"] = {**base["options"], **entry.get("options", {})}
    return merged


def _check_preset_facts(name: str, preset_name: str, checkpoint: str | None, extractor: Extractor) -> None:
    preset = PRESETS[preset_name]
    found = extractor.num_layers(), extractor.channels()
    if found != (preset.blocks, preset.channels):
        raise ModelConfigError(f"model {name!r}: checkpoint {checkpoint!r} has {found[0]} blocks of {found[1]} "
                               f"channels, but preset {preset_name!r} is {preset.blocks} blocks of {preset.channels}")


def extractor_class(family: str, *, model: str = "model") -> type[Extractor]:
    """The extractor class of ``family``; an unknown family is an error listing the known ones."""
    if family not in FAMILIES:
        raise ModelConfigError(f"model {model!r}: unknown model family {family!r}; known: {sorted(FAMILIES)}")
    module_name, class_name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def timestep_token(timestep: int | None) -> str:
    """Path token of a timestep: ``t{value}`` for generative models, ``none`` otherwise."""
    return "none" if timestep is None else f"t{timestep}"


def parse_timestep_token(token: str) -> int | None:
    if token == "none":
        return None
    if token.startswith("t") and token[1:].isdigit():
        return int(token[1:])
    raise ValueError(f"bad timestep token {token!r}; expected 'none' or 't<integer>'")


@dataclass(frozen=True)
class ModelConfig:
    """A config entry resolved against its family: concrete layers and timesteps."""

    name: str
    family: str
    paradigm: str
    layers: tuple[int, ...]
    timesteps: tuple[int | None, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    random_init: bool = False

    def build(self, seed: int) -> Extractor:
        cls = extractor_class(self.family, model=self.name)
        return cls(self.name, self.options, seed=seed, checkpoint=self.checkpoint)

    @property
    def timestep_tokens(self) -> list[str]:
        return [timestep_token(t) for t in self.timesteps]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "paradigm": self.paradigm, "layers": list(self.layers),
                "timesteps": list(self.timesteps), "options": dict(self.options), "checkpoint": self.checkpoint,
                "random_init": self.random_init}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        return cls(**{**data, "layers": tuple(data["layers"]), "timesteps": tuple(data["timesteps"])})


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
    """Resolve one ``models:`` entry: family known, options valid, layers in range, timesteps sensible."""
    if "@" in name or "/" in name:
        raise ModelConfigError(f"model name {name!r} may not contain '@' or '/'")
    preset_name = entry.get("preset")
    entry = apply_preset(name, entry)
    family = entry.get("family")
    cls = extractor_class(family, model=name)
    extractor = cls(name, entry.get("options", {}), seed=seed, checkpoint=entry.get("checkpoint"))
    layers = resolve_layers(entry.get("layers", "all"), extractor.num_layers(), model=name)
    timesteps = _resolve_timesteps(name, entry, cls.uses_timestep)
    for timestep in timesteps:
        if timestep is not None:
            extractor.check_timestep(timestep)
    if preset_name is not None:
        _check_preset_facts(name, preset_name, entry.get("checkpoint"), extractor)
    return ModelConfig(name, family, cls.paradigm, layers, timesteps, dict(entry.get("options", {})),
                       entry.get("checkpoint"), extractor.random_init)
