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
from extractors.codecs import normalise_compression
from extractors.ids import check_name, timestep_token
from extractors.layers import resolve_layers

FAMILIES: dict[str, str] = {
    "pixels": "extractors.baselines:PixelsExtractor",
    "random-patch": "extractors.baselines:RandomPatchExtractor",
    "oracle": "extractors.calibration:OracleExtractor",
    "noise": "extractors.calibration:NoiseExtractor",
    "wan-t2v": "extractors.wan:WanT2VExtractor",
    "wan-i2v": "extractors.wan:WanI2VExtractor",
    "cogvideox-t2v": "extractors.cogvideox:CogVideoXT2VExtractor",
    "cogvideox-i2v": "extractors.cogvideox:CogVideoXI2VExtractor",
    "qwen2.5-vl": "extractors.qwen:Qwen25VLExtractor",
    "qwen3-vl": "extractors.qwen:Qwen3VLExtractor",
    "internvl": "extractors.internvl:InternVLExtractor",
    "siglip": "extractors.towers:SiglipExtractor",
    "clip": "extractors.towers:ClipExtractor",
}


class ModelConfigError(ValueError):
    """A model entry of the config that cannot be resolved."""


@dataclass(frozen=True)
class Preset:
    """The paper's facts about one checkpoint; a config entry ``preset: NAME`` starts from these.

    ``layers`` are the paper's probing layers: for VGMs 18 (ScanNet semantics) and 20 (DL3DV geometry) at
    ``timestep``, the value fed to the denoiser that the paper's "index 749" means for the family; for VLMs
    the language model's ``hidden_states`` index of the paper (route ``llm``). ``blocks`` (selectable layers
    of that route: VLMs have decoder layers + 1) and ``channels`` are checked against the checkpoint.
    """

    family: str
    hub_id: str
    blocks: int
    channels: int
    layers: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    timestep: int | None = None

    def entry(self) -> dict[str, Any]:
        entry = {"family": self.family, "checkpoint": self.hub_id, "layers": list(self.layers),
                 "options": dict(self.options)}
        if self.timestep is not None:
            entry["timesteps"] = [self.timestep]
        return entry


def _wan(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    return Preset(family, hub_id, blocks, channels, (18, 20), timestep=500,
                  options={"frames": 81, "resolution": [480, 832], "max_text_tokens": 512})


def _cogvideox(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    return Preset(family, hub_id, blocks, channels, (18, 20), timestep=250,
                  options={"frames": 49, "resolution": [480, 720], "max_text_tokens": 226})


def _vlm(hub_id: str, family: str, decoder_layers: int, channels: int, layer: int) -> Preset:
    return Preset(family, hub_id, decoder_layers + 1, channels, (layer,), options={"route": "llm"})


def _tower(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    return Preset(family, hub_id, blocks, channels, (-1,))


PRESETS: dict[str, Preset] = {
    "Wan2.1-T2V-1.3B": _wan("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan-t2v", 30, 1536),
    "Wan2.1-T2V-14B": _wan("Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan-t2v", 40, 5120),
    "Wan2.1-I2V-14B-480P": _wan("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan-i2v", 40, 5120),
    "CogVideoX-2b": _cogvideox("THUDM/CogVideoX-2b", "cogvideox-t2v", 30, 1920),
    "CogVideoX-5b": _cogvideox("THUDM/CogVideoX-5b", "cogvideox-t2v", 42, 3072),
    "CogVideoX-5b-I2V": _cogvideox("THUDM/CogVideoX-5b-I2V", "cogvideox-i2v", 42, 3072),
    # VLMs: the paper's layer per family (Qwen2.5-VL 21, Qwen3-VL 22, InternVL3 18, InternVL3.5 22).
    "Qwen2.5-VL-3B": _vlm("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl", 36, 2048, 21),
    "Qwen2.5-VL-7B": _vlm("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", 28, 3584, 21),
    "Qwen3-VL-2B": _vlm("Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl", 28, 2048, 22),
    "Qwen3-VL-4B": _vlm("Qwen/Qwen3-VL-4B-Instruct", "qwen3-vl", 36, 2560, 22),
    "Qwen3-VL-8B": _vlm("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl", 36, 4096, 22),
    # InternVL through the transformers-native conversions (-hf / -HF), never trust_remote_code.
    "InternVL3-1B": _vlm("OpenGVLab/InternVL3-1B-hf", "internvl", 24, 896, 18),
    "InternVL3-2B": _vlm("OpenGVLab/InternVL3-2B-hf", "internvl", 28, 1536, 18),
    "InternVL3-8B": _vlm("OpenGVLab/InternVL3-8B-hf", "internvl", 28, 3584, 18),
    "InternVL3.5-4B": _vlm("OpenGVLab/InternVL3_5-4B-HF", "internvl", 36, 2560, 22),
    "InternVL3.5-8B": _vlm("OpenGVLab/InternVL3_5-8B-HF", "internvl", 36, 4096, 22),
    # Image-text contrastive towers as baselines: the last block's patch tokens.
    "SigLIP2-so400m-384": _tower("google/siglip2-so400m-patch14-384", "siglip", 27, 1152),
    "CLIP-ViT-L-14": _tower("openai/clip-vit-large-patch14", "clip", 24, 1024),
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
    if extractor.options.get("route") != preset.options.get("route"):
        return  # another route of the checkpoint (e.g. the vision tower): the preset's counts do not apply
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


@dataclass(frozen=True)
class ModelConfig:
    """A config entry resolved against its family: concrete layers and timesteps, and how its features are
    stored (``compression``: a normalised spec of :mod:`extractors.codecs`; None = lossless)."""

    name: str
    family: str
    paradigm: str
    layers: tuple[int, ...]
    timesteps: tuple[int | None, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    random_init: bool = False
    compression: Mapping[str, Any] | None = None

    def build(self, seed: int) -> Extractor:
        cls = extractor_class(self.family, model=self.name)
        return cls(self.name, self.options, seed=seed, checkpoint=self.checkpoint)

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
        return data

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
    extractor = cls(name, entry.get("options", {}), seed=seed, checkpoint=entry.get("checkpoint"))
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
    return ModelConfig(name, family, cls.paradigm, layers, timesteps, dict(entry.get("options", {})),
                       entry.get("checkpoint"), extractor.random_init, compression)
