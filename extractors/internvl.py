"""InternVL3 / InternVL3.5 through the transformers-native classes (``InternVLForConditionalGeneration``).

Only the ``-hf`` checkpoints (converted to the native classes) load; the original repositories
(``model_type: internvl_chat``) need ``trust_remote_code`` and a different module layout, and are refused
with a clear error. ``trust_remote_code`` is never enabled by default: the option ``trust_remote_code:
true`` passes it to ``from_pretrained`` (model and tokenizer) for a checkpoint you trust whose config or
tokenizer ships code; it is recorded with the features.

Each frame is one 448x448 tile (resized whole, no crop and no dynamic tiling, so the token grid covers the
whole frame): the tower gives 32x32 patches (its class token dropped), the pixel shuffle 16x16 tokens per
frame in raster order, which the language model sees between ``<img>`` and ``</img>``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.base import OptionError
from extractors.hooks import capture_blocks, first_output, run_until_deepest
from extractors.imaging import normalise_uint8, resize_uint8
from extractors.presets import vlm_preset
from extractors.vlm import LanguageModelRoute, VisionLanguageExtractor

TOWER_KEY_MAPPING = {r"^(model\.)?vision_tower\.": ""}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PIL_BICUBIC = 3

INTERNVL_TINY: dict[str, dict[str, Any]] = {
    # 64x64 tiles of 8x8 patches: 8x8 patches -> 4x4 tokens per frame after the pixel shuffle.
    "tiny-internvl": {"transformers": ("InternVLForConditionalGeneration", {
        "model_type": "internvl", "image_token_id": 248, "image_seq_length": 16, "downsample_ratio": 0.5,
        "vision_config": {"model_type": "internvl_vision", "hidden_size": 32, "num_hidden_layers": 2,
                          "num_attention_heads": 2, "intermediate_size": 64, "image_size": [64, 64],
                          "patch_size": [8, 8]},
        "text_config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
                        "bos_token_id": 242, "eos_token_id": 241, "pad_token_id": 242}})},
}


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


class InternVLExtractor(VisionLanguageExtractor):
    family = "internvl"
    tiny_models = INTERNVL_TINY
    # Through the transformers-native conversions (-hf / -HF), never trust_remote_code. The paper's layer:
    # hidden_states[18] for InternVL3, [22] for InternVL3.5.
    presets = {
        "InternVL3-1B": vlm_preset("OpenGVLab/InternVL3-1B-hf", "internvl", 24, 896, 18),
        "InternVL3-2B": vlm_preset("OpenGVLab/InternVL3-2B-hf", "internvl", 28, 1536, 18),
        "InternVL3-8B": vlm_preset("OpenGVLab/InternVL3-8B-hf", "internvl", 28, 3584, 18),
        "InternVL3.5-4B": vlm_preset("OpenGVLab/InternVL3_5-4B-HF", "internvl", 36, 2560, 22),
        "InternVL3.5-8B": vlm_preset("OpenGVLab/InternVL3_5-8B-HF", "internvl", 36, 4096, 22),
    }
    tower_depth_key = "num_hidden_layers"
    default_options: ClassVar[dict[str, Any]] = {
        **VisionLanguageExtractor.default_options,
        "system_prompt": None,
        "trust_remote_code": False,  # never by default; only the transformers-native (-hf) classes are used
    }

    def validate_options(self) -> None:
        super().validate_options()
        if self.config.get("model_type") != "internvl":
            hint = (" (an original InternVL repository: use its transformers-native '-hf' conversion)"
                    if "auto_map" in self.config else "")
            raise OptionError(f"model {self.name!r}: checkpoint {self.checkpoint.location!r} has model_type "
                              f"{self.config.get('model_type')!r}, not 'internvl'{hint}")

    @property
    def patch_grid(self) -> tuple[int, int]:
        (height, width), (p_h, p_w) = _pair(self.vision["image_size"]), _pair(self.vision["patch_size"])
        return height // p_h, width // p_w

    @property
    def token_grid(self) -> tuple[int, int]:
        """The language model's grid per frame: the patch grid after the pixel shuffle (``downsample_ratio``)."""
        ratio = float(self.config.get("downsample_ratio", 0.5))
        rows, cols = self.patch_grid
        return int(rows * ratio), int(cols * ratio)

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        return self.token_grid if self.language_route else self.patch_grid  # frames are resized whole to one tile

    def load_model(self) -> None:
        remote = {"trust_remote_code": True} if self.options["trust_remote_code"] else {}
        if self.language_route:
            self.model = self.checkpoint.load("InternVLForConditionalGeneration", **self.load_kwargs(), **remote)
            self.model = self.model.to(self.device).eval()
            self.route = LanguageModelRoute(self.checkpoint.tokenizer(**remote), int(self.config["image_token_id"]))
        else:
            self.tower = self.checkpoint.load_part("InternVLVisionModel", TOWER_KEY_MAPPING, **self.load_kwargs(),
                                                   **remote).to(self.device).eval()
        processor = self.checkpoint.preprocessor_config() or {}
        self.mean = processor.get("image_mean", IMAGENET_MEAN)
        self.std = processor.get("image_std", IMAGENET_STD)
        self.resample = int(processor.get("resample", PIL_BICUBIC))

    def pixel_values(self, images: np.ndarray) -> Any:
        import torch

        size = _pair(self.vision["image_size"])
        values = normalise_uint8(resize_uint8(images, size, self.resample), self.mean, self.std, channels_first=True)
        self.record_grid(resized=size, patches=self.patch_grid)
        return torch.from_numpy(values).to(self.device, self.dtype)

    def features(self, images: np.ndarray, layers: tuple[int, ...], clip: int) -> tuple[dict[int, Any], list[int]]:
        positions = list(range(len(images)))
        if self.language_route:
            inputs, grid = self.language_inputs(images)
            return self.route.hidden_states(self.model, inputs, layers, grid), positions
        pixel_values = self.pixel_values(images)
        with capture_blocks(self.tower.encoder.layer, layers, first_output) as captured:
            run_until_deepest(lambda: self.tower(pixel_values=pixel_values))
        return {layer: t[:, 1:].reshape(len(images), *self.patch_grid, -1)  # class token dropped
                for layer, t in captured.items()}, positions

    def language_inputs(self, images: np.ndarray) -> tuple[dict[str, Any], tuple[int, int, int]]:
        """The model inputs of one multi-image conversation of ``images``, and the visual grid (N, h, w):
        each image is ``<img>`` + 256 context tokens (16x16 after the pixel shuffle) + ``</img>``."""
        import torch

        grid = (len(images), *self.token_grid)
        tokens = grid[1] * grid[2]
        context = self.route.tokenizer.convert_ids_to_tokens(int(self.config["image_token_id"]))
        text = self.route.conversation([f"<img>{context * tokens}</img>"] * len(images), self.options["prompt"],
                                       self.options["system_prompt"])
        input_ids = self.route.input_ids(text, len(images) * tokens, self.name).to(self.device)
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                  "pixel_values": self.pixel_values(images)}
        return inputs, grid


EXTRACTORS = (InternVLExtractor,)
