"""Layer selection, the family registry, and the baseline extractors."""

from __future__ import annotations

import numpy as np
import pytest

from extractors import resolve_layers, resolve_model
from extractors.base import OptionError
from extractors.baselines import PixelsExtractor, RandomPatchExtractor
from extractors.ids import parse_timestep_token, timestep_token
from extractors.layers import LayerSpecError
from extractors.registry import ModelConfig, ModelConfigError


@pytest.mark.parametrize(("spec", "expected"), [
    ("all", (0, 1, 2, 3)), ([0], (0,)), ([-1], (3,)), ([3, -4, 1, -1], (0, 1, 3)),
])
def test_layer_spec_resolves(spec, expected) -> None:
    assert resolve_layers(spec, 4) == expected


@pytest.mark.parametrize("bad", [[4], [-5]])
def test_layer_out_of_range_names_valid_range(bad) -> None:
    with pytest.raises(LayerSpecError, match=r"wan: layer -?\d is out of range; valid layers are 0\.\.3 \(or -4\.\.-1"):
        resolve_layers(bad, 4, model="wan")


@pytest.mark.parametrize("bad", [[], "first", [1.5], [True], 3])
def test_layer_spec_rejects_malformed(bad) -> None:
    with pytest.raises(LayerSpecError):
        resolve_layers(bad, 4)


def test_resolve_model_validates_family_options_layers_timesteps() -> None:
    model = resolve_model("rp", {"family": "random-patch", "layers": [-1], "options": {"depth": 4}})
    assert model.layers == (3,) and model.timesteps == (None,) and model.paradigm == "baseline"
    assert ModelConfig.from_json(model.to_json()) == model
    with pytest.raises(ModelConfigError, match=r"model 'x': unknown model family 'nope'; known: \["):
        resolve_model("x", {"family": "nope"})
    with pytest.raises(OptionError, match=r"model 'p' \(family 'pixels'\): unknown option\(s\) \['patch'\]"):
        resolve_model("p", {"family": "pixels", "options": {"patch": 4}})
    with pytest.raises(OptionError, match=r"option patch_size=0 must be a positive integer"):
        resolve_model("p", {"family": "pixels", "options": {"patch_size": 0}})
    with pytest.raises(LayerSpecError, match=r"p: layer 1 is out of range; valid layers are 0\.\.0"):
        resolve_model("p", {"family": "pixels", "layers": [1]})
    with pytest.raises(ModelConfigError, match="takes no noise; remove 'timesteps'"):
        resolve_model("p", {"family": "pixels", "timesteps": [500]})


def test_timestep_tokens_round_trip() -> None:
    for value in (None, 0, 500):
        assert parse_timestep_token(timestep_token(value)) == value
    with pytest.raises(ValueError, match="bad timestep token"):
        parse_timestep_token("500")


def _frames(t: int = 3, h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_pixels_is_the_cell_average_in_raster_order() -> None:
    frames = _frames()
    features = PixelsExtractor("p", {"patch_size": 8}).extract(frames, (0,), None)
    cells = features.layers[0]
    assert cells.shape == (3, 2, 3, 3)
    unit = frames.astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(cells[1, 1, 2], unit[1, 8:16, 16:24].mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(features.frame_index, [0, 1, 2])


def test_random_patch_is_seeded_and_local() -> None:
    frames = _frames()
    a = RandomPatchExtractor("r", {}, seed=1).extract(frames, (0, 1), None)
    b = RandomPatchExtractor("r", {}, seed=1).extract(frames, (0, 1), None)
    c = RandomPatchExtractor("r", {}, seed=2).extract(frames, (0, 1), None)
    np.testing.assert_array_equal(a.layers[1], b.layers[1])
    assert not np.allclose(a.layers[1], c.layers[1])
    # changing one 8x8 patch changes exactly that grid cell: tokens are laid out in raster order
    changed = frames.copy()
    changed[2, 8:16, 0:8] = 255 - changed[2, 8:16, 0:8]
    d = RandomPatchExtractor("r", {}, seed=1).extract(changed, (1,), None)
    differs = np.abs(d.layers[1] - a.layers[1]).max(axis=-1) > 1e-6
    assert differs.sum() == 1 and differs[2, 1, 0]


def test_random_patch_stops_after_deepest_layer() -> None:
    extractor = RandomPatchExtractor("r", {"depth": 4})
    extractor._weights[2:] = [None, None]  # any use of a block after the deepest requested one would fail
    features = extractor.extract(_frames(), (0, 1), None)
    assert sorted(features.layers) == [0, 1]


@pytest.mark.parametrize("name", ["tiny-wan-i2v", "tiny-qwen2.5-vl", "tiny-siglip"])
def test_expected_files_are_what_the_builder_writes(name, tmp_path):
    """A workflow plans with a tiny model's expected JSON files before its rule builds it: every key they
    hold must read the same from the written checkpoint."""
    import json

    from extractors.tiny_models import build_tiny_model, expected_files

    def held(expected, written):  # the part of ``written`` that ``expected`` names, recursively
        if not isinstance(expected, dict):
            return written
        return {key: held(value, (written or {}).get(key)) for key, value in expected.items()}

    path = build_tiny_model(name, tmp_path / name)
    for relative, expected in expected_files(name).items():
        written = json.loads((path / relative).read_text())
        if relative == "model_index.json":  # tokenizer and processor class names follow transformers' version
            assert {k for k, v in written.items() if isinstance(v, list) and v[0]} == set(expected) - {"_class_name"}
            expected = {k: v for k, v in expected.items() if k not in ("tokenizer", "image_processor")}
        assert held(expected, written) == expected, relative
