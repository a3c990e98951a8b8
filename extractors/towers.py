"""SigLIP / SigLIP2 / CLIP vision towers (transformers) as feature sources: block outputs on the patch grid.

Each frame is resized whole to the tower's square input (no centre crop, so the patch grid covers the frame
the ground truth describes) and normalised with the checkpoint's mean and std. Layer ``L`` is the output of
encoder block ``L``; CLIP's class token is dropped (SigLIP has none). The vision model loads alone from a
full ``SiglipModel`` / ``CLIPModel`` checkpoint or from a vision-only one; missing weights are an error.
SigLIP2 is served by its fixed-resolution checkpoints (``model_type: siglip``); the NaFlex variants
(``Siglip2Model``) take variable patch grids and are refused with a clear error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.base import OptionError
from extractors.hooks import capture_blocks, first_output, run_until_deepest
from extractors.imaging import normalise_uint8, resize_uint8
from extractors.presets import tower_preset
from extractors.vlm import ImageSequenceExtractor

_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
           "image_size": 64, "patch_size": 16}
_TEXT = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "max_position_embeddings": 16}

TOWER_TINY: dict[str, dict[str, Any]] = {
    # Full image-text models, as the real checkpoints are: the towers load their vision part alone.
    "tiny-siglip": {"tokenizer": False, "transformers": ("SiglipModel", {
        "model_type": "siglip", "vision_config": _VISION, "text_config": _TEXT})},
    "tiny-clip": {"tokenizer": False, "transformers": ("CLIPModel", {
        "model_type": "clip", "projection_dim": 16, "vision_config": _VISION,
        "text_config": {**_TEXT, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}})},
}

PIL_BICUBIC, PIL_BILINEAR = 3, 2


class VisionTowerExtractor(ImageSequenceExtractor):
    """A contrastive image-text tower; subclasses set the transformers class and preprocessing defaults."""

    paradigm = "vision-encoder"
    vision_class: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    prefix_tokens: ClassVar[int]  # tokens before the patches (CLIP: the class token)
    default_mean: ClassVar[tuple[float, float, float]]
    default_std: ClassVar[tuple[float, float, float]]
    default_resample: ClassVar[int]

    def validate_options(self) -> None:
        super().validate_options()
        model_type = self.config.get("model_type")
        if model_type not in self.model_types:
            raise OptionError(f"model {self.name!r}: checkpoint {self.checkpoint.location!r} has model_type "
                              f"{model_type!r}; family {self.family!r} takes {list(self.model_types)}"
                              + (" (NaFlex SigLIP2 is not supported: use a fixed-resolution SigLIP2 checkpoint)"
                                 if model_type == "siglip2" else ""))

    @property
    def vision(self) -> dict[str, Any]:
        return self.config.get("vision_config") or self.config

    def num_layers(self) -> int:
        return int(self.vision["num_hidden_layers"])

    def channels(self) -> int:
        return int(self.vision["hidden_size"])

    @property
    def patch_grid(self) -> int:
        return int(self.vision["image_size"]) // int(self.vision["patch_size"])

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        return self.patch_grid, self.patch_grid  # every frame is resized whole to the tower's square input

    def load_model(self) -> None:
        self.tower = self.checkpoint.load(self.vision_class, **self.load_kwargs()).to(self.device).eval()
        processor = self.checkpoint.preprocessor_config() or {}
        self.mean = processor.get("image_mean", self.default_mean)
        self.std = processor.get("image_std", self.default_std)
        self.resample = int(processor.get("resample", self.default_resample))

    def features(self, images: np.ndarray, layers: tuple[int, ...], clip: int) -> tuple[dict[int, Any], list[int]]:
        import torch

        size = int(self.vision["image_size"])
        values = normalise_uint8(resize_uint8(images, (size, size), self.resample), self.mean, self.std,
                                 channels_first=True)
        self.record_grid(resized=(size, size), patches=(self.patch_grid, self.patch_grid))
        pixel_values = torch.from_numpy(values).to(self.device, self.dtype)
        with capture_blocks(self.tower.encoder.layers, layers, first_output) as captured:
            run_until_deepest(lambda: self.tower(pixel_values=pixel_values))
        grid = (len(images), self.patch_grid, self.patch_grid, -1)
        return ({layer: t[:, self.prefix_tokens:].reshape(grid) for layer, t in captured.items()},
                list(range(len(images))))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "layer_meaning": "output of vision encoder block L, patch tokens only"}


class SiglipExtractor(VisionTowerExtractor):
    family = "siglip"
    vision_class = "SiglipVisionModel"
    model_types = ("siglip", "siglip_vision_model")
    prefix_tokens = 0
    default_mean = default_std = (0.5, 0.5, 0.5)
    default_resample = PIL_BICUBIC
    tiny_models = {"tiny-siglip": TOWER_TINY["tiny-siglip"]}
    presets = {"SigLIP2-so400m-384": tower_preset("google/siglip2-so400m-patch14-384", "siglip", 27, 1152)}


class ClipExtractor(VisionTowerExtractor):
    family = "clip"
    vision_class = "CLIPVisionModel"
    model_types = ("clip", "clip_vision_model")
    prefix_tokens = 1
    default_mean = (0.48145466, 0.4578275, 0.40821073)
    default_std = (0.26862954, 0.26130258, 0.27577711)
    default_resample = PIL_BICUBIC
    tiny_models = {"tiny-clip": TOWER_TINY["tiny-clip"]}
    presets = {"CLIP-ViT-L-14": tower_preset("openai/clip-vit-large-patch14", "clip", 24, 1024)}


EXTRACTORS = (SiglipExtractor, ClipExtractor)
