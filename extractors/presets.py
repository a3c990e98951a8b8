"""A preset: the paper's facts about one public checkpoint, kept next to its family's class.

A config entry ``preset: NAME`` starts from these; the registry collects every family's presets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """``layers`` are the paper's probing layers: for VGMs 18 (ScanNet semantics) and 20 (DL3DV geometry) at
    ``timestep``, the value fed to the denoiser that the paper's "index 749" means for the family (families
    the paper did not probe: the same relative depth); for VLMs the language model's ``hidden_states``
    index of the paper (route ``llm``). ``blocks`` (selectable layers of that route: VLMs have decoder
    layers + 1) and ``channels`` are checked against the checkpoint. ``unavailable`` explains why a listed
    model cannot be used (no loadable route); such a preset is refused with that explanation."""

    family: str
    hub_id: str
    blocks: int
    channels: int
    layers: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    timestep: int | None = None
    unavailable: str | None = None

    def entry(self) -> dict[str, Any]:
        entry = {"family": self.family, "checkpoint": self.hub_id, "layers": list(self.layers),
                 "options": dict(self.options)}
        if self.timestep is not None:
            entry["timesteps"] = [self.timestep]
        return entry


def vlm_preset(hub_id: str, family: str, decoder_layers: int, channels: int, layer: int) -> Preset:
    """A VLM probed at the language model's ``hidden_states[layer]`` (route ``llm``)."""
    return Preset(family, hub_id, decoder_layers + 1, channels, (layer,), options={"route": "llm"})


def tower_preset(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    """An image-text tower: the last block's patch tokens."""
    return Preset(family, hub_id, blocks, channels, (-1,))


# Models a user would look for that have no loadable route yet: listed so that ``preset:`` says why.
UNAVAILABLE: dict[str, Preset] = {
    "Open-Sora-v2": Preset(
        "open-sora", "hpcai-tech/Open-Sora-v2", 57, 3072, (34, 38), timestep=500,
        unavailable="Open-Sora 2.0 has no diffusers or PyPI route: its MMDiT is defined only in the Open-Sora "
                    "repository, whose code needs colossalai and mmengine and pins an old torch. See "
                    "docs/video-families.md#open-sora-20 for what adding it would take."),
}
