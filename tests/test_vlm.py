"""VLM and vision-tower extractors: real transformers classes, tiny random weights, saved and loaded back.

The layout tests use "local" copies of the tiny models whose attention output projections are zeroed: every
token then depends only on its own patch, so changing a few patches of one frame must change exactly the
grid cells of those patches. That fails whenever a token order (merge window, attention window, pixel
shuffle, class token) is not undone — the frames are larger than Qwen2.5-VL's attention window.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.base import OptionError
from extractors.checkpoints import CheckpointError
from extractors.layers import LayerSpecError
from extractors.registry import resolve_model
from extractors.tiny_models import build_tiny_model
from clipstore.frames import query_frames

TINY = ("tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-internvl", "tiny-siglip", "tiny-clip")
FAMILY = {"tiny-qwen2.5-vl": "qwen2.5-vl", "tiny-qwen3-vl": "qwen3-vl", "tiny-internvl": "internvl",
          "tiny-siglip": "siglip", "tiny-clip": "clip"}
# Frame side at which the processors do not resize: Qwen2.5-VL 112 = 8 patches of 14 (2x2 attention windows
# of 4x4 patches), Qwen3-VL 128 = 8 patches of 16, InternVL 64 = 8 patches of 8, SigLIP/CLIP 64 = 4 of 16.
SIDE = {"tiny-qwen2.5-vl": 112, "tiny-qwen3-vl": 128, "tiny-internvl": 64, "tiny-siglip": 64, "tiny-clip": 64}
PATCH = {"tiny-qwen2.5-vl": 14, "tiny-qwen3-vl": 16, "tiny-internvl": 8, "tiny-siglip": 16, "tiny-clip": 16}
ATTENTION_OUTPUT = re.compile(r"(visual\.blocks\.\d+\.attn\.proj|vision_tower\.encoder\.layer\.\d+\.attention\."
                              r"projection_layer|vision_model\.encoder\.layers\.\d+\.self_attn\.out_proj)\.")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vlm-models")
    for name in TINY:
        build_tiny_model(name, root / name)
    return root


@pytest.fixture(scope="module")
def local_root(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the tiny models with zeroed vision attention outputs: every vision token stays local."""
    import shutil

    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("vlm-local")
    for name in TINY:
        shutil.copytree(tiny_root / name, root / name)
        weights = load_file(root / name / "model.safetensors")
        zeroed = [key for key in weights if ATTENTION_OUTPUT.search(key)]
        assert zeroed, f"{name}: no attention output projection found to zero"
        save_file({k: torch.zeros_like(v) if k in zeroed else v for k, v in weights.items()},
                  root / name / "model.safetensors", metadata={"format": "pt"})
    return root


def extractor(root: Path, tiny: str, layers="all", **options):
    model = resolve_model("m", {"family": FAMILY[tiny], "checkpoint": str(root / tiny), "layers": layers,
                                "options": {"device": "cpu", **options}})
    built = model.build(seed=0)
    built.load()
    return model, built


def frames(count: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 3), dtype=np.uint8)


# --- frames ------------------------------------------------------------------------------------------------

def test_query_frames_follow_the_paper_protocol() -> None:
    assert query_frames(81, 76) == [0, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73]
    assert query_frames(17, 76) == [0, 1, 5, 9, 13]


@pytest.mark.parametrize("tiny", TINY)
def test_frame_index_maps_each_feature_frame_to_its_clip_frame(tiny_root: Path, tiny: str) -> None:
    model, ex = extractor(tiny_root, tiny, layers=[-1], frames=[9, 0, 5])
    features = ex.extract(frames(12, 64), model.layers, None, clip=3)
    assert features.frame_index.tolist() == [9, 0, 5]
    _, query = extractor(tiny_root, tiny, layers=[-1], context_frames=8)
    assert query.extract(frames(12, 64), model.layers, None).frame_index.tolist() == [0, 1, 5]


@pytest.mark.parametrize("tiny", ["tiny-qwen2.5-vl", "tiny-internvl", "tiny-siglip"])
def test_tower_features_of_a_frame_do_not_depend_on_the_other_frames(tiny_root: Path, tiny: str) -> None:
    options = {"route": "tower"} if tiny != "tiny-siglip" else {}
    model, ex = extractor(tiny_root, tiny, layers=[-1], frames=[2, 7], **options)
    clip = frames(8, 64)
    both = ex.extract(clip, model.layers, None).layers[model.layers[0]]
    _, alone = extractor(tiny_root, tiny, layers=[-1], frames=[7], **options)
    np.testing.assert_allclose(both[1], alone.extract(clip, model.layers, None).layers[model.layers[0]][0],
                               atol=1e-5)


def test_pairs_feed_consecutive_frames_as_one_temporal_patch(local_root: Path) -> None:
    model, ex = extractor(local_root, "tiny-qwen2.5-vl", layers=[-1], route="tower", temporal="pairs",
                          frames=[0, 1, 4, 5])
    clip = frames(6, 112)
    changed = clip.copy()
    changed[5] = 255 - changed[5]
    base, other = (ex.extract(c, model.layers, None) for c in (clip, changed))
    assert base.frame_index.tolist() == [0, 4]
    diff = np.abs(base.layers[model.layers[0]] - other.layers[model.layers[0]]).max(axis=(1, 2, 3))
    assert diff[0] == 0 and diff[1] > 0


# --- token layout --------------------------------------------------------------------------------------------

CHANGED_PATCHES = [(0, 6), (0, 7), (1, 7), (5, 2)]  # asymmetric: a transposed grid would not match


def changed_cells(root: Path, tiny: str, layer: int, cell_patches: int, **options) -> set[tuple[int, int, int]]:
    """(frame, row, col) of the feature cells that change when CHANGED_PATCHES of clip frame 1 change."""
    side, patch = SIDE[tiny], PATCH[tiny]
    model, ex = extractor(root, tiny, layers=[layer], frames=[0, 1, 2], **options)
    clip = frames(3, side)
    changed = clip.copy()
    for row, col in CHANGED_PATCHES:
        if row * patch < side and col * patch < side:
            changed[1, row * patch:(row + 1) * patch, col * patch:(col + 1) * patch] = 0
    base, other = (ex.extract(c, model.layers, None).layers[model.layers[0]] for c in (clip, changed))
    return {tuple(map(int, cell)) for cell in np.argwhere(np.abs(base - other).max(axis=-1) > 1e-6)}


def expected_cells(tiny: str, cell_patches: int) -> set[tuple[int, int, int]]:
    grid = SIDE[tiny] // PATCH[tiny]
    return {(1, row // cell_patches, col // cell_patches) for row, col in CHANGED_PATCHES
            if row < grid and col < grid}


@pytest.mark.parametrize("tiny", ["tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-internvl"])
def test_tower_grid_is_raster_at_sizes_beyond_the_attention_window(local_root: Path, tiny: str) -> None:
    found = changed_cells(local_root, tiny, -1, 1, route="tower")
    assert found == expected_cells(tiny, 1)


@pytest.mark.parametrize("tiny", ["tiny-siglip", "tiny-clip"])
def test_contrastive_tower_grid_is_raster_without_class_token(local_root: Path, tiny: str) -> None:
    assert changed_cells(local_root, tiny, -1, 1) == expected_cells(tiny, 1)


@pytest.mark.parametrize("tiny", ["tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-internvl"])
def test_language_route_visual_tokens_are_raster_merged_cells(local_root: Path, tiny: str) -> None:
    # hidden_states[0] at the image positions = the merged vision tokens scattered into the embeddings.
    options = {"min_pixels": SIDE[tiny] ** 2} if tiny.startswith("tiny-qwen") else {}
    assert changed_cells(local_root, tiny, 0, 2, **options) == expected_cells(tiny, 2)


def test_the_layout_test_fails_when_the_window_order_is_not_undone(local_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from extractors.qwen import Qwen25VLExtractor

    monkeypatch.setattr(Qwen25VLExtractor, "window_ordered", False)
    assert changed_cells(local_root, "tiny-qwen2.5-vl", -1, 1, route="tower") != expected_cells("tiny-qwen2.5-vl", 1)


# --- the language-model route ---------------------------------------------------------------------------

@pytest.mark.parametrize("tiny", ["tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-internvl"])
def test_language_route_keeps_exactly_the_visual_tokens_in_order(tiny_root: Path, tiny: str) -> None:
    """Every layer (embeddings, each decoder layer, the final norm) equals the model's own
    output_hidden_states at the image-token positions, in token order; the forward stops early."""
    model, ex = extractor(tiny_root, tiny, frames=[0, 3])
    clip = frames(4, 64)
    features = ex.extract(clip, model.layers, None)
    inputs, grid = ex.language_inputs(clip[[0, 3]])
    ids = inputs["input_ids"][0]
    image_id = ex.route.image_token_id
    visual = torch.nonzero(ids == image_id).ravel()
    assert len(visual) == grid[0] * grid[1] * grid[2]
    prompt_ids = ex.route.tokenizer(ex.options["prompt"], add_special_tokens=False)["input_ids"]
    assert int(visual.max()) < len(ids) - len(prompt_ids)  # the prompt comes after every image
    with torch.inference_mode():
        reference = ex.model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    assert set(features.layers) == set(range(len(reference)))
    for layer, states in enumerate(reference):
        expected = states[0, visual].reshape(*grid, -1).numpy()
        np.testing.assert_allclose(features.layers[layer], expected, atol=1e-5, err_msg=f"layer {layer}")


def test_the_prompt_cannot_change_a_visual_token(tiny_root: Path) -> None:
    clip = frames(2, 64)
    runs = [extractor(tiny_root, "tiny-qwen3-vl", layers=[-1], frames=[0, 1], prompt=p) for p in ("", "the scene")]
    first, second = (ex.extract(clip, m.layers, None).layers[m.layers[0]] for m, ex in runs)
    np.testing.assert_array_equal(first, second)


def test_qwen_visual_tokens_get_mrope_positions(tiny_root: Path) -> None:
    """transformers 5 silently falls back to 1-D text positions without mm_token_type_ids: we pass them."""
    _, ex = extractor(tiny_root, "tiny-qwen2.5-vl", frames=[0])
    inputs, _ = ex.language_inputs(frames(1, 64))
    with torch.inference_mode():
        with_types = ex.model(**inputs, output_hidden_states=True).hidden_states[1]
        inputs.pop("mm_token_type_ids")
        ex.model.model.rope_deltas = None
        without = ex.model(**inputs, output_hidden_states=True).hidden_states[1]
    assert not torch.allclose(with_types, without)


def test_recorded_grid_and_labels(tiny_root: Path) -> None:
    model, ex = extractor(tiny_root, "tiny-qwen2.5-vl", layers=[-1], min_pixels=112 * 112, random_init=True)
    ex.extract(frames(5, 64), model.layers, None)
    provenance = ex.provenance()
    assert provenance["input_grid"] == {"resized": [112, 112], "merged_tokens": [4, 4]}
    assert provenance["random_init"] and provenance["route"] == "llm" and model.paradigm == "vlm"
    assert provenance["system_prompt"] == "You are a helpful assistant."


# --- layer selection and bad input --------------------------------------------------------------------

def test_layers_count_per_route(tiny_root: Path) -> None:
    llm = resolve_model("m", {"family": "qwen2.5-vl", "checkpoint": str(tiny_root / "tiny-qwen2.5-vl")})
    tower = resolve_model("m", {"family": "qwen2.5-vl", "checkpoint": str(tiny_root / "tiny-qwen2.5-vl"),
                                "options": {"route": "tower"}})
    assert llm.layers == (0, 1, 2) and tower.layers == (0, 1, 2, 3)
    deepstack = resolve_model("m", {"family": "qwen3-vl", "checkpoint": str(tiny_root / "tiny-qwen3-vl"),
                                    "layers": "deepstack", "options": {"route": "tower"}})
    assert deepstack.layers == (1, 2)


def test_unknown_layers_are_errors_naming_the_range(tiny_root: Path) -> None:
    checkpoint = str(tiny_root / "tiny-qwen2.5-vl")
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_model("m", {"family": "qwen2.5-vl", "checkpoint": checkpoint, "layers": [3]})
    with pytest.raises(LayerSpecError, match="'all' or a non-empty list"):
        resolve_model("m", {"family": "qwen2.5-vl", "checkpoint": checkpoint, "layers": "deepstack"})
    with pytest.raises(LayerSpecError, match="'all', 'deepstack' or"):
        resolve_model("m", {"family": "qwen3-vl", "checkpoint": str(tiny_root / "tiny-qwen3-vl"),
                            "layers": "deepstak", "options": {"route": "tower"}})


def test_frame_counts_the_model_cannot_take(tiny_root: Path) -> None:
    checkpoint = str(tiny_root / "tiny-qwen2.5-vl")
    with pytest.raises(OptionError, match="groups of 2 .*lists 3"):
        resolve_model("m", {"family": "qwen2.5-vl", "checkpoint": checkpoint,
                            "options": {"route": "tower", "temporal": "pairs", "frames": [0, 1, 2]}})
    model, ex = extractor(tiny_root, "tiny-qwen2.5-vl", layers=[0], route="tower", temporal="pairs")
    with pytest.raises(ValueError, match=r"clip 4: temporal: pairs needs a multiple of 2 frames; 3 selected"):
        ex.extract(frames(9, 64), model.layers, None, clip=4)  # query frames 0, 1, 5
    _, listed = extractor(tiny_root, "tiny-siglip", layers=[0], frames=[0, 12])
    with pytest.raises(ValueError, match=r"clip 2 has 9 frames; option frames asks for \[12\]"):
        listed.extract(frames(9, 64), (0,), None, clip=2)


def test_missing_tower_weights_are_refused(tiny_root: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "no-tower"
    shutil.copytree(tiny_root / "tiny-qwen2.5-vl", broken)
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("visual.blocks.1.")},
              broken / "model.safetensors", metadata={"format": "pt"})
    for route in ("tower", "llm"):
        model = resolve_model("m", {"family": "qwen2.5-vl", "checkpoint": str(broken), "options": {"route": route}})
        with pytest.raises(CheckpointError, match=r"would run with random weights: \d+ weight\(s\) not found "
                                                  r"\(.*blocks\.1\."):
            model.build(0).load()


def test_a_checkpoint_of_another_family_is_refused(tiny_root: Path) -> None:
    with pytest.raises(OptionError, match="has model_type 'clip'; family 'siglip' takes"):
        resolve_model("m", {"family": "siglip", "checkpoint": str(tiny_root / "tiny-clip")})
    with pytest.raises(OptionError, match="has model_type 'qwen3_vl', not 'internvl'"):
        resolve_model("m", {"family": "internvl", "checkpoint": str(tiny_root / "tiny-qwen3-vl")})
    with pytest.raises(OptionError, match="checkpoint '/nowhere/model' does not exist"):
        resolve_model("m", {"family": "qwen3-vl", "checkpoint": "/nowhere/model"})


def test_unknown_options_and_routes(tiny_root: Path) -> None:
    checkpoint = str(tiny_root / "tiny-qwen3-vl")
    with pytest.raises(OptionError, match="route='vision'; use llm or tower"):
        resolve_model("m", {"family": "qwen3-vl", "checkpoint": checkpoint, "options": {"route": "vision"}})
    with pytest.raises(OptionError, match="temporal: pairs applies to the tower route only"):
        resolve_model("m", {"family": "qwen3-vl", "checkpoint": checkpoint, "options": {"temporal": "pairs"}})
    with pytest.raises(OptionError, match=r"unknown option\(s\) \['pixels'\]"):
        resolve_model("m", {"family": "qwen3-vl", "checkpoint": checkpoint, "options": {"pixels": 3}})


def test_attention_implementation_reaches_from_pretrained(tiny_root: Path) -> None:
    _, ex = extractor(tiny_root, "tiny-siglip", layers=[0], attn_implementation="eager")
    assert ex.tower.config._attn_implementation == "eager"
