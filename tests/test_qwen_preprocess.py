"""Our NumPy/PIL Qwen-VL preprocessing against transformers' own PIL image processor (offline, CPU)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import Qwen2VLImageProcessorPil
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    smart_resize as hf_smart_resize,
)

from extractors.qwen_preprocess import QwenPatchifier, smart_resize

PRESETS = {"qwen2_5_vl": QwenPatchifier.qwen2_5_vl, "qwen3_vl": QwenPatchifier.qwen3_vl}
# (H, W): square multiple of 32, non-multiples, very elongated, above max_pixels, below min_pixels.
SIZES = [(64, 64), (70, 100), (37, 250), (1100, 1000), (20, 30)]
# Pixel ranges of the released checkpoints' preprocessor_config.json files.
QWEN2_5_VL_CONFIG = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD),
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
}
QWEN3_VL_CONFIG = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}


def random_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def hf_processor(patchifier: QwenPatchifier) -> Qwen2VLImageProcessorPil:
    """The official processor with the same settings as ``patchifier``."""
    return Qwen2VLImageProcessorPil(
        patch_size=patchifier.patch_size, merge_size=patchifier.merge_size,
        temporal_patch_size=patchifier.temporal_patch_size, image_mean=list(patchifier.mean),
        image_std=list(patchifier.std), min_pixels=patchifier.min_pixels, max_pixels=patchifier.max_pixels,
    )


def hf_images(processor: Qwen2VLImageProcessorPil, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = processor(images=list(frames), input_data_format="channels_last", return_tensors="np")
    return out["pixel_values"], out["image_grid_thw"]


def test_defaults_are_the_installed_processors() -> None:
    processor = Qwen2VLImageProcessorPil()
    default = QwenPatchifier.qwen2_5_vl()
    assert (default.min_pixels, default.max_pixels) == (processor.size.shortest_edge, processor.size.longest_edge)
    assert (default.min_pixels, default.max_pixels) == (3136, 1003520)
    assert default.mean == tuple(OPENAI_CLIP_MEAN) and default.std == tuple(OPENAI_CLIP_STD)
    assert (default.patch_size, default.merge_size, default.temporal_patch_size) == (
        processor.patch_size, processor.merge_size, processor.temporal_patch_size)
    qwen3 = QwenPatchifier.qwen3_vl()
    assert (qwen3.patch_size, qwen3.mean, qwen3.std) == (16, (0.5,) * 3, (0.5,) * 3)
    assert (qwen3.min_pixels, qwen3.max_pixels) == (3136, 1003520)


def test_smart_resize_matches_installed() -> None:
    rng = np.random.default_rng(1)
    cases = [(h, w) for h in (1, 13, 14, 27, 28, 42, 70, 224, 333, 1080) for w in (1, 28, 50, 100, 250, 1920)]
    cases += [tuple(int(v) for v in rng.integers(1, 3000, 2)) for _ in range(300)]
    ranges = [(3136, 1003520), (65536, 16777216), (3136, 12845056), (1000, 50000)]
    for factor in (28, 32):
        for min_pixels, max_pixels in ranges:
            for height, width in cases:
                if max(height, width) / min(height, width) > 200:
                    continue
                expected = hf_smart_resize(height, width, factor=factor, min_pixels=min_pixels,
                                           max_pixels=max_pixels)
                assert smart_resize(height, width, factor, min_pixels, max_pixels) == expected, (height, width)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_images_equal_processor(preset: str, height: int, width: int) -> None:
    patchifier = PRESETS[preset]()
    frames = random_frames(3, height, width, seed=height * 1000 + width)  # several images in one call
    pixel_values, grid_thw = patchifier.images(frames)
    expected_values, expected_grid = hf_images(hf_processor(patchifier), frames)
    assert pixel_values.dtype == np.float32 and grid_thw.dtype == np.int64
    np.testing.assert_array_equal(grid_thw, expected_grid)
    np.testing.assert_array_equal(pixel_values, expected_values)
    assert grid_thw.tolist() == [[1, *patchifier.grid(height, width)]] * 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sizes_cover_both_clamps(preset: str) -> None:
    """The SIZES list really exercises rounding only, max_pixels clamping and min_pixels growth."""
    patchifier = PRESETS[preset]()
    factor = patchifier.factor
    rounded = {size: (round(size[0] / factor) * factor) * (round(size[1] / factor) * factor) for size in SIZES}
    assert rounded[(1100, 1000)] > patchifier.max_pixels
    assert rounded[(20, 30)] < patchifier.min_pixels
    assert patchifier.min_pixels <= rounded[(70, 100)] <= patchifier.max_pixels
    assert 70 % factor and 100 % factor and 37 % factor and 250 % factor


@pytest.mark.parametrize("config", [QWEN2_5_VL_CONFIG, QWEN3_VL_CONFIG], ids=["qwen2_5_vl", "qwen3_vl"])
def test_checkpoint_configs_equal_processor(config: dict) -> None:
    patchifier = QwenPatchifier.from_preprocessor_config(config)
    processor = Qwen2VLImageProcessorPil(**copy.deepcopy(config))  # the processor edits dicts in place
    frames = random_frames(2, 90, 130, seed=5)
    pixel_values, grid_thw = patchifier.images(frames)
    expected_values, expected_grid = hf_images(processor, frames)
    np.testing.assert_array_equal(grid_thw, expected_grid)
    np.testing.assert_array_equal(pixel_values, expected_values)


def test_from_preprocessor_config_keys() -> None:
    qwen3 = QwenPatchifier.from_preprocessor_config(QWEN3_VL_CONFIG)
    assert qwen3 == QwenPatchifier.qwen3_vl(min_pixels=65536, max_pixels=16777216)
    qwen25 = QwenPatchifier.from_preprocessor_config(QWEN2_5_VL_CONFIG, max_pixels=50176)
    assert qwen25 == QwenPatchifier.qwen2_5_vl(max_pixels=50176)
    # Top-level min/max_pixels win over size, as in the processor; legacy size keys are accepted.
    both = {"min_pixels": 5000, "size": {"shortest_edge": 10, "longest_edge": 99999}}
    assert QwenPatchifier.from_preprocessor_config(both).min_pixels == 5000
    assert QwenPatchifier.from_preprocessor_config(both).max_pixels == 99999
    legacy = QwenPatchifier.from_preprocessor_config({"size": {"min_pixels": 1000, "max_pixels": 20000}})
    assert (legacy.min_pixels, legacy.max_pixels) == (1000, 20000)
    assert QwenPatchifier.from_preprocessor_config({}) == QwenPatchifier.qwen2_5_vl()
    for unsupported in ({"do_normalize": False}, {"resample": 2}, {"rescale_factor": 1.0}):
        with pytest.raises(ValueError, match="unsupported preprocessor config"):
            QwenPatchifier.from_preprocessor_config(unsupported)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_grid_matches_processor_patch_count(preset: str) -> None:
    patchifier = PRESETS[preset]()
    processor = hf_processor(patchifier)
    for height, width in [*SIZES, (480, 640), (1080, 1920), (5, 900)]:
        grid_h, grid_w = patchifier.grid(height, width)
        assert grid_h * grid_w == processor.get_number_of_image_patches(height, width)
        assert grid_h % patchifier.merge_size == 0 and grid_w % patchifier.merge_size == 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_video_of_repeated_frame_equals_image(preset: str) -> None:
    patchifier = PRESETS[preset]()
    frame = random_frames(1, 70, 100, seed=9)
    video_values, video_grid = patchifier.video(np.repeat(frame, 2, axis=0))
    image_values, image_grid = patchifier.images(frame)
    np.testing.assert_array_equal(video_values, image_values)
    np.testing.assert_array_equal(video_grid, image_grid)


def test_video_shapes_and_frame_count() -> None:
    patchifier = QwenPatchifier.qwen3_vl()
    values, grid = patchifier.video(random_frames(6, 64, 96))
    assert grid.tolist() == [[3, 4, 6]] and grid.dtype == np.int64
    assert values.shape == (3 * 4 * 6, 3 * 2 * 16 * 16) and values.dtype == np.float32
    with pytest.raises(ValueError, match=r"5 frames.*multiple of temporal_patch_size=2"):
        patchifier.video(random_frames(5, 64, 96))


def coordinate_frames(frames: int, height: int, width: int) -> np.ndarray:
    """Channel 0 = pixel row, channel 1 = pixel column, channel 2 = frame index."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    one = np.stack([rows, cols, np.zeros_like(rows)], axis=-1)
    stack = np.repeat(one[None], frames, axis=0)
    stack[..., 2] = np.arange(frames)[:, None, None]
    return stack.astype(np.uint8)


@pytest.mark.parametrize(("patch", "merge", "tps"), [(14, 2, 2), (16, 2, 2), (4, 3, 3)])
def test_token_layout(patch: int, merge: int, tps: int) -> None:
    """Token k of time step t holds patch (row, col) of merge window k // m**2, vector laid out (C, tps, p, p).

    Sizes are multiples of the factor inside the pixel range, so the resize is the identity; mean 0 and
    std 1 make the values pixel / 255, which we invert to read back each pixel's coordinates.
    """
    patchifier = QwenPatchifier(patch_size=patch, merge_size=merge, temporal_patch_size=tps, mean=(0.0,) * 3,
                                std=(1.0,) * 3, min_pixels=1, max_pixels=10**6)
    grid_h, grid_w = 2 * merge, 3 * merge
    height, width = grid_h * patch, grid_w * patch
    frames = coordinate_frames(2 * tps, height, width)
    values, grid = patchifier.video(frames)
    assert grid.tolist() == [[2, grid_h, grid_w]]
    decoded = np.rint(values.astype(np.float64) * 255).astype(int).reshape(-1, 3, tps, patch, patch)
    within_rows, within_cols = np.meshgrid(np.arange(patch), np.arange(patch), indexing="ij")
    for token, vector in enumerate(decoded):
        step, k = divmod(token, grid_h * grid_w)
        window, inside = divmod(k, merge * merge)
        row = (window // (grid_w // merge)) * merge + inside // merge
        col = (window % (grid_w // merge)) * merge + inside % merge
        for t in range(tps):
            np.testing.assert_array_equal(vector[0, t], row * patch + within_rows)
            np.testing.assert_array_equal(vector[1, t], col * patch + within_cols)
            np.testing.assert_array_equal(vector[2, t], np.full((patch, patch), step * tps + t))


def test_images_repeat_each_frame_over_the_temporal_patch() -> None:
    patchifier = QwenPatchifier(patch_size=4, mean=(0.0,) * 3, std=(1.0,) * 3, min_pixels=1, max_pixels=10**6)
    frames = coordinate_frames(3, 16, 24)
    values, grid = patchifier.images(frames)
    assert grid.tolist() == [[1, 4, 6]] * 3
    decoded = np.rint(values.astype(np.float64) * 255).astype(int).reshape(3, 4 * 6, 3, 2, 4, 4)
    for index in range(3):  # image i's tokens are block i, both temporal slots hold frame i
        assert (decoded[index, :, 2] == index).all()
        np.testing.assert_array_equal(decoded[index, :, :, 0], decoded[index, :, :, 1])


@pytest.mark.parametrize(("frames", "message"), [
    (np.zeros((32, 32, 3), np.uint8), r"shape \(N, H, W, 3\).*\(32, 32, 3\)"),
    (np.zeros((1, 32, 32, 4), np.uint8), r"shape \(N, H, W, 3\).*\(1, 32, 32, 4\)"),
    (np.zeros((1, 32, 32, 3), np.float32), "uint8.*float32"),
    (np.zeros((0, 32, 32, 3), np.uint8), "empty"),
    (np.zeros((1, 0, 32, 3), np.uint8), "0x32"),
    (np.zeros((1, 2, 500, 3), np.uint8), "2x500.*aspect ratio"),
])
def test_bad_frames_raise(frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QwenPatchifier.qwen3_vl().images(frames)


def test_bad_settings_raise() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        QwenPatchifier.qwen3_vl().images([[1, 2, 3]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="10x1000.*too small.*0x1008"):
        smart_resize(10, 1000, 28, 0, 10**6)
    with pytest.raises(ValueError, match="min_pixels"):
        QwenPatchifier.qwen3_vl(min_pixels=10**7)
    with pytest.raises(ValueError, match="patch_size"):
        QwenPatchifier(patch_size=0)
    with pytest.raises(ValueError, match="mean must have 3"):
        QwenPatchifier(patch_size=14, mean=(0.5, 0.5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std must be non-zero"):
        QwenPatchifier(patch_size=14, std=(0.5, 0.0, 0.5))


def test_module_imports_neither_torch_nor_transformers() -> None:
    code = ("import sys, extractors.qwen_preprocess; "
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
