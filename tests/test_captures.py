"""Attention captures (queries, keys, values) of video diffusion blocks: equal to what the attention module
computes, stored as their own arrays, read back as their own sources, and named in source ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.captures import CaptureError, expand_heads, normalise_captures, parse_token
from extractors.ids import SourceId
from extractors.registry import ModelConfigError, resolve_model
from extractors.tiny_models import build_tiny_model

ALL = ("output", "attn_q", "attn_k", "attn_v")
WAN = {"frames": 9, "resolution": [64, 64], "random_init": True, "max_text_tokens": 8}
COGVIDEOX = {"frames": 9, "resolution": [32, 48], "random_init": True, "max_text_tokens": 8}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: build_tiny_model(name, root / name) for name in ("tiny-wan-t2v", "tiny-cogvideox-t2v")}


def _extractor(tiny, family: str, name: str, options: dict, captures=ALL):
    model = resolve_model("m", {"family": family, "checkpoint": str(tiny[name]), "timesteps": [500],
                                "options": options, "capture": list(captures)})
    extractor = model.build(seed=0)
    extractor.load()
    return extractor


def _clip(frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def _attention_input(attention, run):
    """The keyword inputs of ``attention``'s (first) call during ``run()``."""
    seen = {}

    def record(_module, args, kwargs):
        seen.setdefault("inputs", {"hidden_states": args[0] if args else kwargs["hidden_states"],
                                   "encoder_hidden_states": kwargs.get("encoder_hidden_states")})

    handle = attention.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = run()
    finally:
        handle.remove()
    return seen["inputs"], result


def _as_grid(tokens: torch.Tensor, like: np.ndarray) -> np.ndarray:
    return tokens.reshape(like.shape).float().numpy()


def test_wan_captures_are_attn1s_own_projections(tiny) -> None:
    """Wan's processor: q = norm_q(to_q(x)), k = norm_k(to_k(x)) (RMS over all heads), v = to_v(x), then rotary
    embeddings — the captures are taken before the rotation."""
    extractor = _extractor(tiny, "wan-t2v", "tiny-wan-t2v", WAN)
    attention = extractor.transformer.blocks[1].attn1
    inputs, features = _attention_input(attention, lambda: extractor.extract(_clip(9, 64, 64), (1,), 500, clip=2))
    x = inputs["hidden_states"]
    with torch.inference_mode():
        expected = {"attn_q": attention.norm_q(attention.to_q(x)), "attn_k": attention.norm_k(attention.to_k(x)),
                    "attn_v": attention.to_v(x)}
    for kind, reference in expected.items():
        captured = features.captures[1, kind]
        assert captured.shape == (3, 4, 4, 24)
        np.testing.assert_allclose(captured, _as_grid(reference[0], captured), rtol=1e-5, atol=1e-6)
    assert not np.allclose(features.captures[1, "attn_k"], features.layers[1])


def test_cogvideox_captures_drop_the_text_tokens_of_joint_attention(tiny) -> None:
    """CogVideoX attends over [text; video]: k = norm_k(to_k([text; video]) per head), text tokens first."""
    extractor = _extractor(tiny, "cogvideox-t2v", "tiny-cogvideox-t2v", COGVIDEOX)
    attention = extractor.transformer.transformer_blocks[2].attn1
    inputs, features = _attention_input(attention, lambda: extractor.extract(_clip(9, 32, 48), (2,), 500))
    joint = torch.cat([inputs["encoder_hidden_states"], inputs["hidden_states"]], dim=1)
    text = inputs["encoder_hidden_states"].shape[1]
    heads = attention.heads
    with torch.inference_mode():
        def per_head(projection, norm):
            values = projection(joint).unflatten(2, (heads, -1)).transpose(1, 2)
            values = norm(values) if norm is not None else values
            return values.transpose(1, 2).flatten(2)[:, text:]

        expected = {"attn_q": per_head(attention.to_q, attention.norm_q),
                    "attn_k": per_head(attention.to_k, attention.norm_k), "attn_v": attention.to_v(joint)[:, text:]}
    for kind, reference in expected.items():
        captured = features.captures[2, kind]
        assert captured.shape == (3, 2, 3, 16)
        np.testing.assert_allclose(captured, _as_grid(reference[0], captured), rtol=1e-5, atol=1e-6)


def test_per_head_captures_are_slices_of_the_concatenated_heads(tiny) -> None:
    concat = _extractor(tiny, "wan-t2v", "tiny-wan-t2v", WAN, ("attn_k",))
    model = resolve_model("m", {"family": "wan-t2v", "checkpoint": str(tiny["tiny-wan-t2v"]), "timesteps": [500],
                                "options": WAN, "capture": ["attn_k"], "attention_heads": "per_head"})
    assert model.captures == ("attn_k.h0", "attn_k.h1")
    heads = model.build(seed=0)
    heads.load()
    whole = concat.extract(_clip(9, 64, 64), (0,), 500).captures[0, "attn_k"]
    split = heads.extract(_clip(9, 64, 64), (0,), 500).captures
    np.testing.assert_array_equal(np.concatenate([split[0, "attn_k.h0"], split[0, "attn_k.h1"]], axis=-1), whole)


def test_the_forward_stops_after_the_deepest_block_even_for_attention_only(tiny) -> None:
    extractor = _extractor(tiny, "wan-t2v", "tiny-wan-t2v", WAN, ("attn_v",))
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, block in enumerate(extractor.transformer.blocks)]
    try:
        features = extractor.extract(_clip(9, 64, 64), (0,), 500)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [0] and set(features.captures) == {(0, "attn_v")} and features.layers == {}


def test_a_job_stores_each_capture_as_its_own_array_and_source(tiny, small_store: Path, tmp_path: Path) -> None:
    from extractors.job import run_extraction
    from probes.sources import open_source

    model = resolve_model("m", {"family": "wan-t2v", "checkpoint": str(tiny["tiny-wan-t2v"]), "layers": [0, 2],
                                "timesteps": [500], "capture": ["attn_k", "output"],
                                "options": {**WAN, "frames": 5, "resolution": [32, 32]}})
    assert model.captures == ("output", "attn_k") and model.to_json()["captures"] == ["output", "attn_k"]
    store = tmp_path / "t500" / "shard-0.zarr"
    run_extraction(clip_store=small_store, outputs={500: store}, dataset="small", model=model, shard=0,
                   clips_per_shard=2, seed=0, progress=False)
    import zarr

    assert {"layer_0", "layer_2", "layer_0.attn_k", "layer_2.attn_k"} <= set(zarr.open_group(store).array_keys())
    keys = open_source({"id": "m@t500@L2.attn_k", "stores": [str(store)]})
    output = open_source({"id": "m@t500@L2", "stores": [str(store)]})
    assert keys.attrs["captures"] == ["output", "attn_k"] and keys.grid == output.grid == (2, 2)
    assert keys.views(1, [0, 1]).shape == (2, 2, 2, 24)
    assert not np.allclose(keys.views(1, [0]), output.views(1, [0]))
    with pytest.raises(Exception, match=r"no capture 'attn_q'; it has \['output', 'attn_k'\]"):
        open_source({"id": "m@t500@L2.attn_q", "stores": [str(store)]})


def test_outputs_alone_keep_the_fingerprint_of_stores_written_before_captures(tiny) -> None:
    entry = {"family": "wan-t2v", "checkpoint": str(tiny["tiny-wan-t2v"]), "timesteps": [500], "options": WAN}
    assert "captures" not in resolve_model("m", entry).to_json()
    assert "captures" not in resolve_model("m", {**entry, "capture": ["output"]}).to_json()


def test_capture_config_errors_name_the_model_and_value(tiny) -> None:
    with pytest.raises(ModelConfigError, match=r"model 'm': unknown capture \['attn_x'\]"):
        resolve_model("m", {"family": "pixels", "capture": ["attn_x"]})
    with pytest.raises(Exception, match=r"model 'm' \(family 'pixels'\) captures block outputs only"):
        resolve_model("m", {"family": "pixels", "capture": ["output", "attn_k"]})
    with pytest.raises(ModelConfigError, match=r"model 'm': attention_heads='some'"):
        resolve_model("m", {"family": "wan-t2v", "checkpoint": str(tiny["tiny-wan-t2v"]), "timesteps": [500],
                            "options": WAN, "capture": ["attn_k"], "attention_heads": "some"})
    with pytest.raises(CaptureError, match="non-empty list"):
        normalise_captures("attn_k", model="m")
    assert expand_heads(("output",), "per_head", None, model="m") == ("output",)
    assert parse_token("attn_q.h12") == ("attn_q", 12)


@pytest.mark.parametrize("text", ["m@t500@L3", "m.x@t0@L0.attn_q", "m@none@L2.attn_v.h7"])
def test_source_ids_name_the_capture_and_round_trip(text: str) -> None:
    assert str(SourceId.parse(text)) == text
    assert SourceId.parse("m@t500@L3.attn_k.h2").capture == "attn_k.h2"
    with pytest.raises(ValueError, match="bad source id"):
        SourceId.parse("m@t500@L3.attn_x")
