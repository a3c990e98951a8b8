"""Qwen2.5-VL and Qwen3-VL (transformers) as feature sources, by the language-model or the vision-tower route.

Token order is the trap here. Our own patchify
(:mod:`extractors.qwen_preprocess`, identical to the official image processor) emits patches in 2x2
merge-window order; Qwen2.5-VL's tower additionally permutes groups of 4 patches by attention window in every
block output. The tower route undoes both before reshaping to a raster (row, column) grid. In the language
model, the merger has already put one token per 2x2 group in raster order.

Frames: the language-model route feeds every query frame as its own image (the paper's protocol). The
tower route does too by default (``temporal: repeat``, each frame repeated over the temporal patch as the
image processor does); ``temporal: pairs`` feeds the frames as one video where consecutive pairs share a
temporal patch (T' = frames / 2, the first frame of each pair is its ``frame_index``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.base import OptionError
from extractors.hooks import capture_blocks, first_output, run_until_deepest
from extractors.presets import vlm_preset
from extractors.qwen_preprocess import QwenPatchifier
from extractors.vlm import LanguageModelRoute, VisionLanguageExtractor

# Tower weights are stored under "visual." (Qwen2.5-VL format) or "model.visual." (Qwen3-VL format).
TOWER_KEY_MAPPING = {r"^(model\.)?visual\.": ""}

# --- tiny random-init models (registered in extractors.tiny_models.TINY_MODELS) -------------------------

_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 256, "bos_token_id": 242, "eos_token_id": 241,
         "pad_token_id": 242, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                  "mrope_section": [1, 1, 2]}}
_TOKENS = {"image_token_id": 250, "video_token_id": 251, "vision_start_token_id": 252, "vision_end_token_id": 253}

QWEN_TINY: dict[str, dict[str, Any]] = {
    # window_size 56 = 2 merged tokens: a 64x64 frame (4x4 merged tokens) spans 2x2 attention windows, so
    # the window order is visible in the demo and tests.
    "tiny-qwen2.5-vl": {"transformers": ("Qwen2_5_VLForConditionalGeneration", {
        "model_type": "qwen2_5_vl", **_TOKENS, "text_config": _TEXT,
        "vision_config": {"depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                          "out_hidden_size": 32, "patch_size": 14, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1, 3]}})},
    "tiny-qwen3-vl": {"transformers": ("Qwen3VLForConditionalGeneration", {
        "model_type": "qwen3_vl", **_TOKENS,
        "text_config": {**_TEXT, "head_dim": 8,
                        "rope_parameters": {**_TEXT["rope_parameters"], "mrope_interleaved": True}},
        "vision_config": {"depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                          "out_hidden_size": 32, "patch_size": 16, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "num_position_embeddings": 64,
                          "deepstack_visual_indexes": [1, 2]}})},
}


class QwenVLExtractor(VisionLanguageExtractor):
    """The Qwen-VL recipe; :class:`Qwen25VLExtractor` and :class:`Qwen3VLExtractor` set the facts."""

    tower_depth_key = "depth"
    model_class: ClassVar[str]
    tower_class: ClassVar[str]
    preprocessing: ClassVar[str]  # QwenPatchifier factory: qwen2_5_vl or qwen3_vl
    window_ordered: ClassVar[bool] = False  # Qwen2.5-VL's tower permutes tokens by attention window
    default_system_prompt: ClassVar[str | None] = None  # what the model's own chat template inserts
    default_options: ClassVar[dict[str, Any]] = {
        **VisionLanguageExtractor.default_options,
        "min_pixels": None,  # pixel budget per frame; None = the checkpoint's preprocessor_config.json
        "max_pixels": None,
        "temporal": "repeat",  # tower route: repeat (each frame an image) | pairs (consecutive frames share a patch)
        "system_prompt": "default",  # 'default' = what the model's chat template inserts; null = none
    }

    def validate_options(self) -> None:
        super().validate_options()
        route, temporal = self.options["route"], self.options["temporal"]
        if temporal not in ("repeat", "pairs"):
            raise OptionError(f"model {self.name!r}: option temporal={temporal!r}; use repeat or pairs")
        if temporal == "pairs" and route != "tower":
            raise OptionError(f"model {self.name!r}: temporal: pairs applies to the tower route only; the "
                              f"language-model route feeds every frame as its own image")
        frames = self.options["frames"]
        pair = self.vision["temporal_patch_size"]
        if temporal == "pairs" and isinstance(frames, list) and len(frames) % pair:
            raise OptionError(f"model {self.name!r}: temporal: pairs feeds frames in groups of {pair} "
                              f"(temporal_patch_size); option frames lists {len(frames)}")
        for key in ("min_pixels", "max_pixels"):
            if self.options[key] is not None:
                self.positive_int_option(key)

    def expected_frame_index(self, num_frames: int) -> np.ndarray | None:
        chosen = super().expected_frame_index(num_frames)
        if chosen is None or self.options["temporal"] != "pairs":
            return chosen
        pair = self.vision["temporal_patch_size"]
        return chosen[::pair] if len(chosen) % pair == 0 else None  # a pair stands for its first frame

    # --- loading ----------------------------------------------------------------------------------------
    def load_model(self) -> None:
        self.patchifier = self.make_patchifier()
        if self.language_route:
            self.model = self.checkpoint.load(self.model_class, **self.load_kwargs()).to(self.device).eval()
            self.tokenizer = self.checkpoint.tokenizer()
            self.route = LanguageModelRoute(self.tokenizer, int(self.config["image_token_id"]))
        else:
            self.tower = self.checkpoint.load_part(self.tower_class, TOWER_KEY_MAPPING, **self.load_kwargs())
            self.tower = self.tower.to(self.device).eval()

    def make_patchifier(self) -> QwenPatchifier:
        """The checkpoint's preprocessing, with the patch facts of its vision config and the pixel budget."""
        facts = {"patch_size": int(self.vision["patch_size"]), "merge_size": int(self.vision["spatial_merge_size"]),
                 "temporal_patch_size": int(self.vision["temporal_patch_size"])}
        budget = {k: self.options[k] for k in ("min_pixels", "max_pixels") if self.options[k] is not None}
        processor = self.checkpoint.preprocessor_config()
        if processor is not None:
            return QwenPatchifier.from_preprocessor_config(processor, **facts, **budget)
        return getattr(QwenPatchifier, self.preprocessing)(**facts, **budget)

    def feature_grid(self, height: int, width: int) -> tuple[int, int] | None:
        """The processor's smart-resized patch grid: merged 2x2 on the language route, whole on the tower's."""
        try:
            return self.make_patchifier().grid(height, width, merged=self.language_route)
        except ValueError:
            return None  # a frame size the processor refuses (extraction names it)

    # --- features ---------------------------------------------------------------------------------------
    def features(self, images: np.ndarray, layers: tuple[int, ...], clip: int) -> tuple[dict[int, Any], list[int]]:
        if self.language_route:
            return self._language_features(images, layers), list(range(len(images)))
        return self._tower_features(images, layers, clip)

    def _language_features(self, images: np.ndarray, layers: tuple[int, ...]) -> dict[int, Any]:
        inputs, grid = self.language_inputs(images)
        return self.route.hidden_states(self.model, inputs, layers, grid)

    def language_inputs(self, images: np.ndarray) -> tuple[dict[str, Any], tuple[int, int, int]]:
        """The model inputs of one multi-image conversation of ``images``, and the visual grid (N, h, w)."""
        import torch

        pixel_values, grid_thw = self.patchifier.images(images)
        merge = self.patchifier.merge_size
        grid = (len(images), int(grid_thw[0, 1]) // merge, int(grid_thw[0, 2]) // merge)
        self.record_grid(resized=self._resized(grid_thw), merged_tokens=grid[1:])
        tokens_per_image = grid[1] * grid[2]
        text = self.route.conversation([self._placeholder(tokens_per_image)] * len(images),
                                       self.options["prompt"], self._system_prompt())
        input_ids = self.route.input_ids(text, len(images) * tokens_per_image, self.name).to(self.device)
        # Without mm_token_type_ids (1 = image token) transformers 5 silently gives the image tokens plain
        # text positions instead of Qwen's 3-D M-RoPE positions (Qwen2.5-VL) or refuses (Qwen3-VL).
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                  "mm_token_type_ids": (input_ids == self.route.image_token_id).int(),
                  "pixel_values": torch.from_numpy(pixel_values).to(self.device, self.dtype),
                  "image_grid_thw": torch.from_numpy(grid_thw).to(self.device)}
        return inputs, grid

    def _resized(self, grid_thw: np.ndarray) -> tuple[int, int]:
        """The frame size after the processor's smart resize: (height, width) in pixels."""
        patch = self.patchifier.patch_size
        return int(grid_thw[0, 1]) * patch, int(grid_thw[0, 2]) * patch

    def _placeholder(self, tokens: int) -> str:
        """One image in the conversation, as the processor expands it: start, image pads, end."""
        start, pad, end = self.tokenizer.convert_ids_to_tokens(
            [int(self.config[k]) for k in ("vision_start_token_id", "image_token_id", "vision_end_token_id")])
        return start + pad * tokens + end

    def _system_prompt(self) -> str | None:
        value = self.options["system_prompt"]
        return self.default_system_prompt if value == "default" else value

    def _tower_features(self, images: np.ndarray, layers: tuple[int, ...],
                        clip: int) -> tuple[dict[int, Any], list[int]]:
        import torch

        pairs = self.options["temporal"] == "pairs"
        step = self.patchifier.temporal_patch_size if pairs else 1
        if len(images) % step:
            raise ValueError(f"model {self.name!r}: clip {clip}: temporal: pairs needs a multiple of {step} frames; "
                             f"{len(images)} selected (set option frames to an even-length list)")
        pixel_values, grid_thw = self.patchifier.video(images) if pairs else self.patchifier.images(images)
        self.record_grid(resized=self._resized(grid_thw), patches=grid_thw[0, 1:])
        grid = torch.from_numpy(grid_thw).to(self.device)
        with capture_blocks(self.tower.blocks, layers, first_output) as captured:
            run_until_deepest(lambda: self.tower(torch.from_numpy(pixel_values).to(self.device, self.dtype),
                                                 grid_thw=grid))
        return ({layer: self.raster(tokens, grid_thw) for layer, tokens in captured.items()},
                list(range(0, len(images), step)))

    def raster(self, tokens: Any, grid_thw: np.ndarray) -> Any:
        """Tower block tokens (sum t*h*w, C) -> (T', h, w, C) in raster order: undo window, then merge order."""
        import torch

        merge = self.patchifier.merge_size
        channels = tokens.shape[-1]
        if self.window_ordered:
            from transformers.vision_utils import get_vision_window_index

            window_index, _ = get_vision_window_index(torch.from_numpy(grid_thw), merge, self.tower.window_size,
                                                      self.tower.patch_size)
            groups = tokens.reshape(-1, merge * merge, channels)
            tokens = groups[torch.argsort(window_index.to(tokens.device))].reshape(-1, channels)
        height, width = int(grid_thw[0, 1]), int(grid_thw[0, 2])
        tokens = tokens.reshape(-1, height // merge, width // merge, merge, merge, channels)
        return tokens.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "system_prompt": self._system_prompt() if self.language_route else None}


class Qwen25VLExtractor(QwenVLExtractor):
    family = "qwen2.5-vl"
    model_class = "Qwen2_5_VLForConditionalGeneration"
    tower_class = "Qwen2_5_VisionTransformerPretrainedModel"
    preprocessing = "qwen2_5_vl"
    window_ordered = True
    default_system_prompt = "You are a helpful assistant."  # Qwen2.5-VL's chat template adds it when none is given
    tiny_models = {"tiny-qwen2.5-vl": QWEN_TINY["tiny-qwen2.5-vl"]}
    presets = {  # the paper's layer: hidden_states[21]
        "Qwen2.5-VL-3B": vlm_preset("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl", 36, 2048, 21),
        "Qwen2.5-VL-7B": vlm_preset("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", 28, 3584, 21),
    }


class Qwen3VLExtractor(QwenVLExtractor):
    """Qwen3-VL: no attention windows; ``layers: deepstack`` selects the tower blocks whose outputs the
    DeepStack mergers feed into the language model (``deepstack_visual_indexes``)."""

    family = "qwen3-vl"
    model_class = "Qwen3VLForConditionalGeneration"
    tower_class = "Qwen3VLVisionModel"
    preprocessing = "qwen3_vl"
    tiny_models = {"tiny-qwen3-vl": QWEN_TINY["tiny-qwen3-vl"]}
    presets = {  # the paper's layer: hidden_states[22]
        "Qwen3-VL-2B": vlm_preset("Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl", 28, 2048, 22),
        "Qwen3-VL-4B": vlm_preset("Qwen/Qwen3-VL-4B-Instruct", "qwen3-vl", 36, 2560, 22),
        "Qwen3-VL-8B": vlm_preset("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl", 36, 4096, 22),
    }

    def named_layers(self) -> dict[str, tuple[int, ...]]:
        if self.language_route:
            return {}
        return {"deepstack": tuple(int(i) for i in self.vision.get("deepstack_visual_indexes", ()))}


EXTRACTORS = (Qwen25VLExtractor, Qwen3VLExtractor)
