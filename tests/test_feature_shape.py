"""Every extractor tells the (T', h, w, C) it will store before loading weights, and extraction agrees.

For each tiny model (all routes that change the grid) and each baseline and calibration family, the shape
from ``feature_shape`` (options and configs alone) is compared with the features a real extraction of a
random clip of that size produces, at a full-length and a short clip. Real-size configs (config JSONs
only, no weights) check the arithmetic at the paper's sizes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipstore.synthetic import SyntheticSpec, render_clip
from extractors.registry import extractor_class, resolve_model
from extractors.tiny_models import TINY_MODELS, build_tiny_model

VGM = {"random_init": True, "max_text_tokens": 8, "device": "cpu"}
VLM = {"random_init": True, "device": "cpu"}
# (case, tiny model or None, family, options, clip sizes (frames, height, width)): the first size is a full
# clip, the second a short one (VGMs: fewer frames than option frames; VLMs: fewer than the query lattice).
VGM_SIZES = [(9, 40, 40), (6, 24, 40)]
VLM_SIZES = [(6, 56, 100), (2, 30, 30)]
CASES: list[tuple[str, str | None, str, dict[str, Any], list[tuple[int, int, int]]]] = [
    ("wan-t2v", "tiny-wan-t2v", "wan-t2v", {**VGM, "frames": 9, "resolution": [32, 48]}, VGM_SIZES),
    # context_frames 2 keeps the latents starting at frames 0 and 1 of the full clip's 0, 1, 5.
    ("wan-i2v-context", "tiny-wan-i2v", "wan-i2v", {**VGM, "frames": 9, "resolution": [32, 48],
                                                    "context_frames": 2}, VGM_SIZES),
    ("cogvideox-t2v", "tiny-cogvideox-t2v", "cogvideox-t2v", {**VGM, "frames": 9, "resolution": [32, 48]},
     VGM_SIZES),
    ("cogvideox-rope", "tiny-cogvideox-rope", "cogvideox-t2v", {**VGM, "frames": 9, "resolution": [48, 32]},
     VGM_SIZES),
    # Learned positional embeddings fix the resolution (and the full frame count) to the sample size.
    ("cogvideox-i2v", "tiny-cogvideox-i2v", "cogvideox-i2v", {**VGM, "frames": 17, "resolution": [64, 64]},
     [(17, 40, 40), (10, 24, 40)]),
    ("wan2.2-t2v", "tiny-wan2.2-t2v", "wan2.2-t2v", {**VGM, "frames": 9, "resolution": [32, 48]}, VGM_SIZES),
    ("wan2.2-i2v", "tiny-wan2.2-i2v", "wan2.2-i2v", {**VGM, "frames": 9, "resolution": [32, 48]}, VGM_SIZES),
    ("wan2.2-ti2v", "tiny-wan2.2-ti2v", "wan2.2-ti2v", {**VGM, "frames": 9, "resolution": [64, 96]}, VGM_SIZES),
    ("hunyuan-video", "tiny-hunyuan-video", "hunyuan-video", {**VGM, "frames": 9, "resolution": [32, 48]},
     VGM_SIZES),
    ("ltx-video", "tiny-ltx-video", "ltx-video", {**VGM, "frames": 17, "resolution": [64, 96]},
     [(17, 40, 40), (12, 24, 40)]),
    ("mochi", "tiny-mochi", "mochi", {**VGM, "frames": 13, "resolution": [32, 48]}, [(13, 40, 40), (8, 24, 40)]),
    ("aether", "tiny-aether", "aether", {**VGM, "frames": 25, "resolution": [64, 64], "parts_checkpoint": None},
     [(25, 40, 40), (20, 24, 40)]),
    ("qwen2.5-vl-llm", "tiny-qwen2.5-vl", "qwen2.5-vl", {**VLM, "route": "llm"}, VLM_SIZES),
    ("qwen2.5-vl-tower", "tiny-qwen2.5-vl", "qwen2.5-vl", {**VLM, "route": "tower", "min_pixels": 12544},
     VLM_SIZES),
    ("qwen3-vl-llm", "tiny-qwen3-vl", "qwen3-vl", {**VLM, "route": "llm"}, VLM_SIZES),
    ("qwen3-vl-pairs", "tiny-qwen3-vl", "qwen3-vl", {**VLM, "route": "tower", "temporal": "pairs",
                                                     "frames": [0, 1, 2, 3]}, [(4, 56, 100), (5, 30, 30)]),
    ("internvl-llm", "tiny-internvl", "internvl", {**VLM, "route": "llm"}, VLM_SIZES),
    ("internvl-tower", "tiny-internvl", "internvl", {**VLM, "route": "tower"}, VLM_SIZES),
    ("siglip", "tiny-siglip", "siglip", VLM, VLM_SIZES),
    ("clip", "tiny-clip", "clip", VLM, VLM_SIZES),
    ("pixels", None, "pixels", {"patch_size": 8}, [(3, 40, 36), (1, 16, 8)]),
    ("random-patch", None, "random-patch", {"patch_size": 8, "channels": 16, "depth": 2}, [(3, 40, 36), (1, 16, 8)]),
    ("noise", None, "noise", {"patch_size": 8, "channels": 16}, [(3, 40, 32), (1, 16, 8)]),
]


def test_every_tiny_model_is_covered() -> None:
    assert {case[1] for case in CASES} - {None} == set(TINY_MODELS)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shape-models")
    for name in TINY_MODELS:
        build_tiny_model(name, root / name)
    return root


def _clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_feature_shape_is_the_shape_extraction_stores(tiny_root: Path, case) -> None:
    _, tiny, family, options, sizes = case
    entry = {"family": family, "layers": "all", "options": options,
             **({"checkpoint": str(tiny_root / tiny)} if tiny else {}),
             **({"timesteps": [500]} if extractor_class(family).uses_timestep else {})}
    model = resolve_model("m", entry)
    extractor = model.build(seed=0)
    predicted = [extractor.feature_shape(*size) for size in sizes]  # before any weights are loaded
    assert all(shape is not None for shape in predicted), predicted
    extractor.load()
    layers = (model.layers[0], model.layers[-1])
    for size, shape in zip(sizes, predicted):
        features = extractor.extract_clip({"frames": _clip(*size)}, layers, model.timesteps)
        for timestep, clip_features in features.items():
            for layer, array in clip_features.layers.items():
                assert (len(clip_features.frame_index), *array.shape[1:]) == array.shape, (size, layer)
                assert array.shape == shape, (case[0], size, timestep, layer)
            np.testing.assert_array_equal(clip_features.frame_index, extractor.expected_frame_index(size[0]))


def test_clips_extraction_refuses_have_no_shape(tiny_root: Path) -> None:
    noise = resolve_model("m", {"family": "noise", "options": {"patch_size": 8}}).build(seed=0)
    assert noise.feature_shape(2, 20, 16) is None  # 8 does not divide 20
    pixels = resolve_model("m", {"family": "pixels", "options": {"patch_size": 8}}).build(seed=0)
    assert pixels.feature_shape(2, 4, 16) is None  # smaller than one patch
    vlm = resolve_model("m", {"family": "siglip", "checkpoint": str(tiny_root / "tiny-siglip"),
                              "options": {"frames": [0, 7]}}).build(seed=0)
    assert vlm.feature_shape(4, 64, 64) is None and vlm.feature_shape(8, 64, 64) == (2, 4, 4, 32)
    wan = resolve_model("m", {"family": "wan-t2v", "checkpoint": str(tiny_root / "tiny-wan-t2v"), "timesteps": [0],
                              "options": {**VGM, "frames": 9, "resolution": [32, 48]}}).build(seed=0)
    assert wan.feature_shape(0, 32, 48) is None


def test_oracle_grid_and_frames_are_known_its_channels_follow_the_dataset() -> None:
    arrays = render_clip(SyntheticSpec(clips=1, frames=3, height=24, width=32), 0)
    oracle = resolve_model("m", {"family": "oracle", "options": {"patch_size": 4, "instance_dims": 5}}).build(seed=0)
    assert oracle.feature_shape(3, 24, 32) is None  # the class count comes from the clip store
    features = oracle.extract_clip(arrays, (0,), (None,))[None]
    classes = arrays["tag_counts"].shape[-1]
    assert features.layers[0].shape == (3, *oracle.feature_grid(24, 32), 1 + 3 + classes + 5 + 12)
    assert oracle.feature_grid(24, 32) == (6, 8) and oracle.feature_grid(24, 30) is None
    np.testing.assert_array_equal(features.frame_index, oracle.expected_frame_index(3))


# --- real-size configs (public config values; no weights) ---------------------------------------------------

def _write(root: Path, files: dict[str, dict[str, Any]]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(json.dumps(content))
    return root


def wan_14b_checkpoint(root: Path) -> Path:
    """The JSON files a diffusers checkpoint of Wan-AI/Wan2.1-T2V-14B-Diffusers has that the extractors read."""
    _write(root, {
        "model_index.json": {
            "_class_name": "WanPipeline", "scheduler": ["diffusers", "UniPCMultistepScheduler"],
            "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
            "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"]},
        "transformer/config.json": {
            "_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "num_attention_heads": 40,
            "attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
            "ffn_dim": 13824, "num_layers": 40, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
            "eps": 1e-06, "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024},
        "vae/config.json": {
            "_class_name": "AutoencoderKLWan", "base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2, "attn_scales": [], "temperal_downsample": [False, True, True], "dropout": 0.0},
        "scheduler/scheduler_config.json": {
            "_class_name": "UniPCMultistepScheduler", "num_train_timesteps": 1000, "use_flow_sigmas": True,
            "prediction_type": "flow_prediction", "flow_shift": 3.0},
        "text_encoder/config.json": {
            "architectures": ["UMT5EncoderModel"], "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64,
            "num_layers": 24, "vocab_size": 256384},
    })
    (root / "tokenizer").mkdir()
    return root


def test_wan_14b_preset_shape_from_its_configs_alone(tmp_path: Path) -> None:
    checkpoint = str(wan_14b_checkpoint(tmp_path / "Wan2.1-T2V-14B"))
    model = resolve_model("wan14b", {"preset": "Wan2.1-T2V-14B", "checkpoint": checkpoint})
    extractor = model.build(seed=0)
    assert extractor.feature_shape(81, 480, 832) == (21, 30, 52, 5120)
    assert extractor.feature_shape(81, 720, 1280) == (21, 30, 52, 5120)  # resized to the resolution option
    assert extractor.feature_shape(40, 480, 832) == (10, 30, 52, 5120)  # 37 frames fed: 1 + 36 / 4 latents
    paper = resolve_model("wan14b", {"preset": "Wan2.1-T2V-14B", "checkpoint": checkpoint,
                                     "options": {"context_frames": 76}}).build(seed=0)
    assert paper.feature_shape(81, 480, 832) == (20, 30, 52, 5120)  # latents starting at frames 0, 1, ..., 73


def test_qwen25_vl_7b_shape_from_its_configs_alone(tmp_path: Path) -> None:
    """Qwen/Qwen2.5-VL-7B-Instruct's config.json (older flat format) and preprocessor_config.json."""
    checkpoint = str(_write(tmp_path / "Qwen2.5-VL-7B", {
        "config.json": {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "hidden_size": 3584, "num_hidden_layers": 28, "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "vision_config": {"depth": 32, "hidden_size": 1280, "out_hidden_size": 3584, "patch_size": 14,
                              "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                              "fullatt_block_indexes": [7, 15, 23, 31]}},
        "preprocessor_config.json": {
            "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
            "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "Qwen2VLImageProcessor"},
    }))
    llm = resolve_model("qwen", {"preset": "Qwen2.5-VL-7B", "checkpoint": checkpoint}).build(seed=0)
    # 480x832 -> smart resize to 476x840 (multiples of 28) -> 34x60 patches -> 17x30 merged tokens.
    assert llm.feature_shape(81, 480, 832) == (20, 17, 30, 3584)  # query frames 0, 1, 5, ..., 73
    tower = resolve_model("qwen", {"preset": "Qwen2.5-VL-7B", "checkpoint": checkpoint,
                                   "options": {"route": "tower"}}).build(seed=0)
    assert tower.feature_shape(81, 480, 832) == (20, 34, 60, 1280)
