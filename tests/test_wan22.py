"""Wan2.2 families on tiny random-init pipelines written with ``save_pretrained`` and loaded with ``from_pretrained``.

The strong checks compare with diffusers itself: the experts and the timestep the pipelines' own one-step run
picks and passes (``WanPipeline``, ``WanImageToVideoPipeline``; TI2V's per-token timesteps), the noisy latent
with the scheduler's ``scale_noise``, the latent normalisation with ``prepare_latents``, attention q/k/v with
the block's own projections, and the last block's tokens, through the model's output head, with its output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from extractors import resolve_model
from extractors.base import OptionError
from extractors.diffusion import noise_level
from extractors.layers import LayerSpecError
from extractors.tiny_models import build_tiny_model
from extractors.wan22 import Wan22I2VExtractor, Wan22T2V, Wan22T2VExtractor, Wan22TI2VExtractor

T2V, I2V, TI2V, WAN21 = "tiny-wan2.2-t2v", "tiny-wan2.2-i2v", "tiny-wan2.2-ti2v", "tiny-wan-t2v"
MODELS = {T2V: (Wan22T2VExtractor, "wan2.2-t2v", [32, 48]), I2V: (Wan22I2VExtractor, "wan2.2-i2v", [32, 48]),
          TI2V: (Wan22TI2VExtractor, "wan2.2-ti2v", [64, 96])}  # every grid 2x3 (h != w: no transposes)
HIGH, LOW = "transformer", "transformer_2"


def options(name: str, **extra: Any) -> dict[str, Any]:
    return {"frames": 9, "resolution": MODELS[name][2], "random_init": True, "max_text_tokens": 8, **extra}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: build_tiny_model(name, root / name) for name in (*MODELS, WAN21)}


def make(tiny: dict[str, Path], name: str, seed: int = 0, captures: tuple[str, ...] = ("output",), **extra: Any):
    extractor = MODELS[name][0](name, options(name, **extra), seed=seed, checkpoint=str(tiny[name]),
                                captures=captures)
    extractor.load()
    return extractor


@pytest.fixture(scope="module")
def loaded(tiny: dict[str, Path]) -> dict[str, Any]:
    return {name: make(tiny, name) for name in MODELS}


def clip(name: str, seed: int = 0, frames: int = 9) -> np.ndarray:
    height, width = MODELS[name][2]
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def experts(extractor) -> dict[str, Any]:
    """Every denoiser of the extractor, loaded."""
    return {name: extractor.denoiser(name) for name in extractor.family_spec.transformers}


class Recorder:
    """The keyword inputs of every call of each expert while installed, in call order, by expert name."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.handles = [module.register_forward_pre_hook(
            lambda _m, _a, kwargs, name=name: self.calls.append(
                (name, {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})), with_kwargs=True)
            for name, module in modules.items()]

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self.handles:
            handle.remove()


def recorded_extract(extractor, frames: np.ndarray, layers: tuple[int, ...], timestep: int, clip_index: int = 0):
    """Features and (expert name, transformer kwargs) of the one forward an extraction makes."""
    with Recorder(experts(extractor)) as recorder:
        features = extractor.extract(frames, layers, timestep, clip=clip_index)
    assert len(recorder.calls) == 1
    return features, *recorder.calls[0]


# --- (a) loading and extraction --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_loads_through_from_pretrained_and_extracts(loaded, name: str) -> None:
    extractor = loaded[name]
    assert type(extractor.vae).__name__ == "AutoencoderKLWan" and extractor.random_init
    assert not hasattr(extractor, "text_encoder"), "the text encoder is released after the prompt is encoded"
    features = extractor.extract(clip(name), (0, 2), 500, clip=3)
    for layer in (0, 2):
        array = features.layers[layer]
        assert array.shape == (3, 2, 3, 24) and array.dtype == np.float32 and np.isfinite(array).all()
    np.testing.assert_array_equal(features.frame_index, [0, 1, 5])  # 9 frames -> latents at 0, 1, 5
    assert all(type(model).__name__ == "WanTransformer3DModel" for model in extractor.denoisers.values())
    attributes = extractor.noise_attributes(500)
    assert attributes["sigma"] == 0.5 and attributes.get("expert") == (None if name == TI2V else LOW)


def test_presets_are_the_public_checkpoints() -> None:
    from extractors.registry import presets

    found = {name: presets()[name] for name in ("Wan2.2-T2V-A14B", "Wan2.2-I2V-A14B", "Wan2.2-TI2V-5B")}
    assert {name: (p.family, p.hub_id, p.blocks, p.channels, p.layers, p.timestep) for name, p in found.items()} == {
        "Wan2.2-T2V-A14B": ("wan2.2-t2v", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", 40, 5120, (18, 20), 500),
        "Wan2.2-I2V-A14B": ("wan2.2-i2v", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", 40, 5120, (18, 20), 500),
        "Wan2.2-TI2V-5B": ("wan2.2-ti2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", 30, 3072, (18, 20), 500)}
    assert found["Wan2.2-TI2V-5B"].options["frames"] == 121 and Wan22TI2VExtractor.default_options["frames"] == 121
    assert found["Wan2.2-TI2V-5B"].options["resolution"] == [704, 1280] == Wan22TI2VExtractor.default_options[
        "resolution"]
    assert Wan22T2VExtractor.default_options["resolution"] == [480, 832] == found["Wan2.2-I2V-A14B"].options[
        "resolution"]


# --- experts -----------------------------------------------------------------------------------------------

def test_tiny_experts_share_a_config_but_not_weights(loaded) -> None:
    high, low = experts(loaded[T2V]).values()
    assert high.config == low.config
    matrices = [(a, b) for a, b in zip(high.parameters(), low.parameters(), strict=True) if a.dim() >= 2]
    assert matrices and all(not torch.equal(a, b) for a, b in matrices)  # norms start at 1 in both


@pytest.mark.parametrize("name", [T2V, I2V])
def test_expert_choice_is_the_pipelines_rule_at_every_timestep(tiny, loaded, name: str) -> None:
    index = json.loads((tiny[name] / "model_index.json").read_text())
    scheduler = loaded[name].scheduler
    steps = scheduler.config.num_train_timesteps
    assert index["boundary_ratio"] == {T2V: 0.875, I2V: 0.9}[name] and steps == 1000
    for t in range(steps + 1):  # WanPipeline / WanImageToVideoPipeline: t >= boundary_ratio * num_train_timesteps
        expected = HIGH if t >= index["boundary_ratio"] * steps else LOW
        assert Wan22T2V.denoiser(noise_level(scheduler, t), index) == expected, t


def test_experts_load_on_first_use(tiny) -> None:
    low_only = make(tiny, T2V)
    assert low_only.denoisers == {} and low_only.transformer_config["num_layers"] == 3  # config only, no weights
    low_only.extract(clip(T2V), (0,), 500)
    assert list(low_only.denoisers) == [LOW]  # the paper's timestep never loads the high-noise expert
    high_only = make(tiny, T2V)
    high_only.extract_timesteps(clip(T2V), (0,), (875, 1000))
    assert list(high_only.denoisers) == [HIGH]
    low_only.extract(clip(T2V), (0,), 875)
    assert list(low_only.denoisers) == [LOW, HIGH]


def test_each_side_of_the_boundary_runs_its_own_expert(loaded) -> None:
    """At t = 875 (sigma = boundary_ratio) the high-noise expert runs, at 874 the low-noise one; the features
    are that expert's own block output, not the other's."""
    extractor = loaded[T2V]
    models = experts(extractor)
    for timestep, expert in ((875, HIGH), (874, LOW)):
        features, ran, inputs = recorded_extract(extractor, clip(T2V), (1,), timestep)
        assert ran == expert and extractor.noise_attributes(timestep)["expert"] == expert
        outputs = {}
        for name, model in models.items():
            handle = model.blocks[1].register_forward_hook(lambda _m, _i, out, n=name: outputs.setdefault(n, out))
            try:
                with torch.inference_mode():
                    model(**inputs)
            finally:
                handle.remove()
        other = LOW if expert == HIGH else HIGH
        own, others = (outputs[n].reshape(features.layers[1].shape).numpy() for n in (expert, other))
        np.testing.assert_allclose(features.layers[1], own, rtol=1e-5, atol=1e-5)
        assert np.abs(features.layers[1] - others).max() > 1e-3


# --- (b) the pipelines' own inputs ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipelines(tiny) -> dict[str, Any]:
    """Each tiny model as its diffusers pipeline, from_pretrained."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    return {name: (WanImageToVideoPipeline if name == I2V else WanPipeline).from_pretrained(tiny[name])
            for name in MODELS}


def one_step(pipe, timestep: int):
    """``pipe`` with a scheduler whose one step is ``timestep`` (sigma = timestep / 1000, no shift)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=1.0)
    set_timesteps = scheduler.set_timesteps
    scheduler.set_timesteps = lambda *_, device=None, **__: set_timesteps(sigmas=[timestep / 1000], device=device)
    pipe.scheduler = scheduler
    return pipe


@pytest.mark.parametrize(("name", "timestep", "expert"), [
    (T2V, 500, LOW), (T2V, 875, HIGH), (I2V, 500, LOW), (I2V, 1000, HIGH), (TI2V, 500, HIGH), (TI2V, 250, HIGH)])
def test_tokens_match_the_pipelines_own_step(pipelines, loaded, name: str, timestep: int, expert: str) -> None:
    """One step of the pipeline on our noisy latents: same expert, same inputs (timestep: (1,) for A14B,
    per token (1, T'hw) for TI2V), same block tokens."""
    extractor = loaded[name]
    frames = clip(name, seed=2)
    features, ran, ours = recorded_extract(extractor, frames, (1,), timestep)
    pipe = one_step(pipelines[name], timestep)
    height, width = MODELS[name][2]
    call = {"latents": ours["hidden_states"][:, :extractor.vae.config.z_dim]}
    if name == I2V:
        call["image"] = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255.0  # [0, 1]: it rescales
    tokens: dict[str, torch.Tensor] = {}
    models = {n: getattr(pipe, n) for n in extractor.family_spec.transformers}
    handles = [m.blocks[1].register_forward_hook(lambda _m, _i, out, n=n: tokens.setdefault(n, out.clone()))
               for n, m in models.items()]
    try:
        with Recorder(models) as recorder:
            pipe(prompt="", guidance_scale=1.0, num_inference_steps=1, output_type="latent", max_sequence_length=8,
                 num_frames=9, height=height, width=width, **call)
    finally:
        for handle in handles:
            handle.remove()
    assert ran == expert and [n for n, _ in recorder.calls] == [expert]
    theirs = recorder.calls[0][1]
    torch.testing.assert_close(ours["hidden_states"], theirs["hidden_states"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours["encoder_hidden_states"], theirs["encoder_hidden_states"])
    assert ours["timestep"].shape == theirs["timestep"].shape == ((1, 3 * 2 * 3) if name == TI2V else (1,))
    assert ours["timestep"].tolist() == theirs["timestep"].tolist()
    assert ours.get("encoder_hidden_states_image") is None and theirs.get("encoder_hidden_states_image") is None
    np.testing.assert_allclose(features.layers[1], tokens[expert].reshape(features.layers[1].shape).numpy(),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "timestep"), [(T2V, 875), (I2V, 500), (TI2V, 500)])
def test_noisy_latent_is_the_schedulers_scale_noise(loaded, name: str, timestep: int) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    extractor, spec = loaded[name], loaded[name].family_spec
    frames = clip(name, seed=1)
    _, _, inputs = recorded_extract(extractor, frames, (0,), timestep, clip_index=3)
    with torch.inference_mode():
        x0 = spec.encode_video(extractor, extractor.video_tensor(frames, 3))
    noise = torch.randn(x0.shape, generator=extractor.generator(3, timestep))
    # The training grid (shift 1): every integer t is a timestep, at sigma t / 1000 (the stored sigma).
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(extractor.scheduler.config, shift=1.0)
    expected = scheduler.scale_noise(x0, torch.tensor([float(timestep)]), noise)
    assert extractor.noise_attributes(timestep)["sigma"] == timestep / 1000
    torch.testing.assert_close(inputs["hidden_states"][:, :x0.shape[1]], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [I2V, TI2V])
def test_latents_are_normalised_as_prepare_latents_does(loaded, name: str) -> None:
    """The VAE mode normalised by latents_mean/std: the first frame's latents equal the condition latents of
    WanImageToVideoPipeline.prepare_latents (expand_timesteps: the frame alone, as TI2V-5B's pipeline)."""
    from diffusers import WanImageToVideoPipeline

    extractor = loaded[name]
    video = extractor.video_tensor(clip(name), 0)
    z = extractor.vae.config.z_dim
    pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=extractor.vae,
                                   scheduler=extractor.scheduler, expand_timesteps=True)
    with torch.inference_mode():
        _, condition, _ = pipe.prepare_latents(video[:, :, 0], 1, z, *video.shape[-2:], num_frames=9,
                                               dtype=torch.float32, device=torch.device("cpu"))
        ours = extractor.family_spec.encode_video(extractor, video[:, :, :1])
    torch.testing.assert_close(ours, condition, rtol=1e-5, atol=1e-5)
    if name == TI2V:
        assert extractor.vae.config.latents_std[1] != 1.0  # the tiny statistics make the normalisation show


def test_i2v_condition_is_the_first_frame_only(loaded) -> None:
    extractor, spec = loaded[I2V], loaded[I2V].family_spec
    assert extractor.conditioning == {}  # no image encoder
    frames = clip(I2V)

    def condition(frames: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return spec.clip_conditioning(extractor, extractor.video_tensor(frames, 0), frames)["condition"]

    base = condition(frames)
    assert base.shape == (1, 8, 3, 4, 6)  # first-frame mask (4) + condition latents (4)
    assert base[:, :4, 0].min() == 1 and base[:, :4, 1:].max() == 0
    later, first = frames.copy(), frames.copy()
    later[4], first[0] = 255 - later[4], 255 - first[0]
    torch.testing.assert_close(condition(later), base)
    assert (condition(first) - base).abs().max() > 1e-3


# --- (c) seeds, (d) early stop ----------------------------------------------------------------------------

def test_same_seed_same_features_other_seed_or_clip_different(tiny, loaded) -> None:
    name = T2V
    frames = clip(name)
    first = loaded[name].extract(frames, (1,), 500, clip=2).layers[1]
    again = make(tiny, name, seed=0).extract(frames, (1,), 500, clip=2).layers[1]
    np.testing.assert_array_equal(first, again)
    other_seed = make(tiny, name, seed=1).extract(frames, (1,), 500, clip=2).layers[1]
    other_index = loaded[name].extract(frames, (1,), 500, clip=5).layers[1]
    other_clip = loaded[name].extract(clip(name, seed=9), (1,), 500, clip=2).layers[1]
    for other in (other_seed, other_index, other_clip):
        assert np.abs(first - other).max() > 1e-3


@pytest.mark.parametrize("name", list(MODELS))
def test_blocks_after_the_deepest_requested_one_do_not_run(loaded, name: str) -> None:
    extractor = loaded[name]
    calls: list[tuple[str, int]] = []
    handles = [block.register_forward_hook(lambda *_, n=n, i=i: calls.append((n, i)))
               for n, model in experts(extractor).items() for i, block in enumerate(model.blocks)]
    try:
        extractor.extract(clip(name), (0,), 500)
        low = LOW if name != TI2V else HIGH
        assert calls == [(low, 0)]
        calls.clear()
        extractor.extract(clip(name), (0, 1), 950)
        assert calls == [(HIGH, 0), (HIGH, 1)]
    finally:
        for handle in handles:
            handle.remove()


# --- (e) token layout, (f) attention ----------------------------------------------------------------------

def output_head(transformer, tokens: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                grid: tuple[int, int, int]) -> torch.Tensor:
    """The model's norm_out / proj_out with its timestep modulation, per token for a (B, N) timestep as TI2V
    passes, then unpatchify, applied to (N, D) tokens laid out as the extractor stores them."""
    per_token = timestep.ndim == 2
    temb = transformer.condition_embedder(timestep.flatten(), text, None,
                                          timestep_seq_len=timestep.shape[1] if per_token else None)[0]
    if per_token:
        shift, scale = (transformer.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
        shift, scale = shift.squeeze(2), scale.squeeze(2)
    else:
        shift, scale = (transformer.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    head = transformer.proj_out(transformer.norm_out(tokens[None].float()) * (1 + scale) + shift)[0]
    p_t, p_h, p_w = transformer.config.patch_size
    t, h, w = grid
    cells = head.reshape(t, h, w, p_t, p_h, p_w, -1).permute(6, 0, 3, 1, 4, 2, 5)
    return cells.reshape(-1, t * p_t, h * p_h, w * p_w)


@pytest.mark.parametrize("name", [T2V, TI2V])
def test_token_grid_matches_the_models_own_output_head(loaded, name: str) -> None:
    """Last-block tokens, laid out (T', h, w) as stored, through the output head and unpatchified by that
    layout, equal the model's output: a transposed or shifted grid would not."""
    extractor = loaded[name]
    features, expert, inputs = recorded_extract(extractor, clip(name), (2,), 500)
    transformer = extractor.denoiser(expert)
    stored = features.layers[2]
    with torch.inference_mode():
        rebuilt = output_head(transformer, torch.from_numpy(stored.reshape(-1, stored.shape[-1])),
                              inputs["timestep"], inputs["encoder_hidden_states"], stored.shape[:3])
        output = transformer(**inputs)[0][0]
    assert output.shape == (transformer.config.out_channels, 3, 4, 6)
    torch.testing.assert_close(rebuilt, output, rtol=1e-4, atol=1e-5)


def test_attention_captures_are_the_blocks_own_projections(tiny) -> None:
    """q/k/v as the self-attention's processor computes them (q, k after the q/k norm, before rotary) from the
    attention's input in a plain forward, heads concatenated: only video tokens (self-attention)."""
    name = T2V
    extractor = make(tiny, name, captures=("output", "attn_q", "attn_k", "attn_v"))
    features, expert, inputs = recorded_extract(extractor, clip(name), (1,), 500)
    transformer = extractor.denoiser(expert)
    attention = transformer.blocks[1].attn1
    seen: dict[str, torch.Tensor] = {}

    def record(_module, args, kwargs):
        seen.setdefault("x", (args[0] if args else kwargs["hidden_states"]).clone())

    handle = attention.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            transformer(**inputs)
    finally:
        handle.remove()
    x = seen["x"]
    with torch.inference_mode():
        expected = {"attn_q": attention.norm_q(attention.to_q(x)), "attn_k": attention.norm_k(attention.to_k(x)),
                    "attn_v": attention.to_v(x)}
    for kind, reference in expected.items():
        captured = features.captures[1, kind]
        assert captured.shape == (3, 2, 3, 24)
        np.testing.assert_allclose(captured, reference[0].reshape(captured.shape).numpy(), rtol=1e-5, atol=1e-5)


# --- (g) bad input ----------------------------------------------------------------------------------------

def edited_copy(source: Path, target: Path, edits: dict[str, dict[str, Any]]) -> Path:
    """A copy of a checkpoint with JSON files updated (``None`` values delete a key)."""
    shutil.copytree(source, target)
    for relative, changes in edits.items():
        config = json.loads((target / relative).read_text())
        config.update(changes)
        (target / relative).write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return target


def test_bad_options_and_ranges_give_clear_errors(tiny, loaded) -> None:
    entry = {"family": "wan2.2-t2v", "checkpoint": str(tiny[T2V]), "timesteps": [500], "options": options(T2V)}
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_model("w22", {**entry, "layers": [3]})
    with pytest.raises(OptionError, match=r"'w22'.*timestep 1001 is outside FlowMatchEulerDiscreteScheduler's "
                                          r"range 0\.\.1000"):
        resolve_model("w22", {**entry, "layers": [0], "timesteps": [1001]})
    with pytest.raises(OptionError, match=r"frames=8; this VAE takes 4k\+1 frames"):
        Wan22T2VExtractor("w22", options(T2V, frames=8), checkpoint=str(tiny[T2V]))
    with pytest.raises(OptionError, match=r"resolution 40x48 must be a multiple of 16"):
        Wan22T2VExtractor("w22", options(T2V, resolution=[40, 48]), checkpoint=str(tiny[T2V]))
    with pytest.raises(OptionError, match=r"'ti2v': resolution 48x64 must be a multiple of 32"):
        Wan22TI2VExtractor("ti2v", options(TI2V, resolution=[48, 64]), checkpoint=str(tiny[TI2V]))
    with pytest.raises(OptionError, match=r"family 'wan2.2-t2v' needs 'checkpoint'"):
        Wan22T2VExtractor("w22", options(T2V))
    with pytest.raises(ValueError, match=r"clip 4 has 0 frames, too few for this VAE"):
        loaded[T2V].input_frames(0, clip=4)


def test_missing_parts_give_clear_errors_at_construction(tiny, tmp_path: Path) -> None:
    no_vae = shutil.copytree(tiny[T2V], tmp_path / "no-vae")
    shutil.rmtree(no_vae / "vae")
    with pytest.raises(OptionError, match=r"lacks the folder\(s\) \['vae/'\]"):
        Wan22T2VExtractor("w22", options(T2V), checkpoint=str(no_vae))
    no_expert = shutil.copytree(tiny[T2V], tmp_path / "no-expert")
    shutil.rmtree(no_expert / "transformer_2")
    with pytest.raises(OptionError, match=r"'w22'.*lacks the folder\(s\) \['transformer_2/'\]"):
        Wan22T2VExtractor("w22", options(T2V), checkpoint=str(no_expert))
    unlisted = edited_copy(tiny[T2V], tmp_path / "unlisted", {"model_index.json": {"transformer_2": [None, None]}})
    with pytest.raises(OptionError, match=r"wan2.2-t2v runs two experts split at the pipeline's boundary_ratio"):
        Wan22T2VExtractor("w22", options(T2V), checkpoint=str(unlisted))
    no_ratio = edited_copy(tiny[I2V], tmp_path / "no-ratio", {"model_index.json": {"boundary_ratio": None}})
    with pytest.raises(OptionError, match=r"'w22'.*model_index.json has boundary_ratio=None"):
        Wan22I2VExtractor("w22", options(I2V), checkpoint=str(no_ratio))
    mismatched = edited_copy(tiny[T2V], tmp_path / "mismatched", {"transformer_2/config.json": {"num_layers": 2}})
    with pytest.raises(OptionError, match=r"the experts differ in \{'num_layers': \(3, 2\)\}"):
        Wan22T2VExtractor("w22", options(T2V), checkpoint=str(mismatched))
    declared = edited_copy(tiny[TI2V], tmp_path / "declared", {"vae/config.json": {"scale_factor_spatial": 8}})
    with pytest.raises(OptionError, match=r"compresses x4 in time and x16 in space, but its config declares "
                                          r"scale_factor_temporal=4, scale_factor_spatial=8"):
        Wan22TI2VExtractor("w22", options(TI2V), checkpoint=str(declared))


@pytest.mark.parametrize(("cls", "checkpoint", "message"), [
    (Wan22T2VExtractor, I2V, r"takes 12 input channels and the VAE makes 4; wan2.2-t2v expects 4 \(is it a "
                             r"wan2.2-i2v"),
    (Wan22I2VExtractor, T2V, r"takes 4 input channels and the VAE makes 4; wan2.2-i2v expects 12"),
    (Wan22T2VExtractor, TI2V, r"expand_timesteps=True; wan2.2-t2v follows WanPipeline with expand_timesteps=False"),
    (Wan22TI2VExtractor, T2V, r"expand_timesteps=False; wan2.2-ti2v follows WanPipeline with expand_timesteps=True"),
    (Wan22TI2VExtractor, WAN21, r"expand_timesteps=False; wan2.2-ti2v follows WanPipeline"),
    (Wan22T2VExtractor, WAN21, r"model_index.json has boundary_ratio=None and components"),
])
def test_a_checkpoint_of_another_kind_is_refused(tiny, cls, checkpoint: str, message: str) -> None:
    name = next(n for n, (c, _, _) in MODELS.items() if c is cls)
    with pytest.raises(OptionError, match=r"model 'wrong' \(checkpoint .*\): .*" + message):
        cls("wrong", options(name, resolution=[64, 64]), checkpoint=str(tiny[checkpoint]))


def test_configs_the_pipeline_cannot_follow_are_refused(tiny, tmp_path: Path) -> None:
    wide = edited_copy(tiny[T2V], tmp_path / "wide", {"vae/config.json": {"patch_size": 2, "scale_factor_spatial": 16}})
    with pytest.raises(OptionError, match=r"VAE x patch downsampling is 32; wan2.2-t2v expects 16"):
        Wan22T2VExtractor("w22", options(T2V), checkpoint=str(wide))
    fine = edited_copy(tiny[TI2V], tmp_path / "fine", {"transformer/config.json": {"patch_size": [1, 1, 1]}})
    with pytest.raises(OptionError, match=r"patch_size \[1, 1, 1\]: WanPipeline's per-token timesteps assume a 2x2"):
        Wan22TI2VExtractor("w22", options(TI2V), checkpoint=str(fine))


def test_a_wan21_image_to_video_transformer_is_refused(tiny, tmp_path: Path) -> None:
    clip_conditioned = edited_copy(tiny[I2V], tmp_path / "wan21", {"transformer/config.json": {"image_dim": 32}})
    with pytest.raises(OptionError, match=r"CLIP image embedding \(image_dim=32\).*use family wan-i2v"):
        Wan22I2VExtractor("w22", options(I2V), checkpoint=str(clip_conditioned))


# --- (h) shapes before loading, provenance --------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_feature_shape_before_loading_is_the_stored_shape(tiny, loaded, name: str) -> None:
    planned = MODELS[name][0](name, options(name), checkpoint=str(tiny[name]))  # never loaded
    for frames in (9, 6):  # a full clip and a shorter one (fed its longest 4k+1 prefix: 5 frames)
        shape = planned.feature_shape(frames, 40, 40)
        features = loaded[name].extract(clip(name, frames=frames), (0,), 500)
        assert shape == features.layers[0].shape == ((3 if frames == 9 else 2), 2, 3, 24)


REAL_SCHEDULER = {"_class_name": "UniPCMultistepScheduler", "num_train_timesteps": 1000, "use_flow_sigmas": True,
                  "prediction_type": "flow_prediction", "flow_shift": 3.0}
WAN21_VAE = {"_class_name": "AutoencoderKLWan", "z_dim": 16, "temperal_downsample": [False, True, True],
             "patch_size": None, "scale_factor_spatial": 8, "scale_factor_temporal": 4}
WAN22_VAE = {**WAN21_VAE, "z_dim": 48, "is_residual": True, "in_channels": 12, "patch_size": 2,
             "scale_factor_spatial": 16}


def real_transformer(layers: int, heads: int, channels: int) -> dict[str, Any]:
    return {"_class_name": "WanTransformer3DModel", "num_layers": layers, "num_attention_heads": heads,
            "attention_head_dim": 128, "in_channels": channels, "out_channels": 48 if channels == 48 else 16,
            "patch_size": [1, 2, 2], "image_dim": None}


@pytest.mark.parametrize(("preset", "cls", "index", "vae", "transformer", "shape"), [
    ("Wan2.2-T2V-A14B", Wan22T2VExtractor, {"_class_name": "WanPipeline", "boundary_ratio": 0.875}, WAN21_VAE,
     real_transformer(40, 40, 16), (21, 30, 52, 5120)),
    ("Wan2.2-I2V-A14B", Wan22I2VExtractor, {"_class_name": "WanImageToVideoPipeline", "boundary_ratio": 0.9},
     WAN21_VAE, real_transformer(40, 40, 36), (21, 30, 52, 5120)),
    ("Wan2.2-TI2V-5B", Wan22TI2VExtractor, {"_class_name": "WanPipeline", "expand_timesteps": True}, WAN22_VAE,
     real_transformer(30, 24, 48), (31, 22, 40, 3072)),
])
def test_real_size_configs_give_the_papers_shapes(tmp_path: Path, preset, cls, index, vae, transformer, shape):
    """The public checkpoints' configs (as diffusers' convert_wan_to_diffusers writes them), no weights:
    checks pass and the preset's default clip gives the expected grid (TI2V-5B: 704x1280 / 32 = 22x40)."""
    from extractors.checkpoints import expect_checkpoint
    from extractors.registry import presets

    denoisers = ("transformer", "transformer_2") if "boundary_ratio" in index else ("transformer",)
    parts = {"vae": ["diffusers", "AutoencoderKLWan"], "scheduler": ["diffusers", "UniPCMultistepScheduler"],
             "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
             **{name: ["diffusers", "WanTransformer3DModel"] for name in denoisers}}
    files = {"model_index.json": {**index, **parts}, "vae/config.json": vae,
             "scheduler/scheduler_config.json": {**REAL_SCHEDULER, "flow_shift": 5.0 if len(denoisers) == 1 else 3.0},
             **{f"{name}/config.json": transformer for name in denoisers}}
    location = str(tmp_path / "real" / preset)
    expect_checkpoint(location, files)
    facts = presets()[preset]
    extractor = cls(preset, {**cls.default_options, **facts.options}, checkpoint=location)
    assert (extractor.num_layers(), extractor.channels()) == (facts.blocks, facts.channels)
    assert extractor.feature_shape(facts.options["frames"], 720, 1280) == shape
    if len(denoisers) == 2:
        assert extractor.family_spec.provenance(extractor)["boundary_timestep"] == index["boundary_ratio"] * 1000


def test_a_job_records_the_boundary_and_each_timesteps_expert(tiny, small_store: Path, tmp_path: Path) -> None:
    from extractors import open_feature_store
    from extractors.job import run_extraction

    model = resolve_model("w22", {"family": "wan2.2-t2v", "checkpoint": str(tiny[T2V]), "layers": [-1],
                                  "timesteps": [500, 900], "options": options(T2V, frames=5, resolution=[32, 32])})
    outputs = {500: tmp_path / "t500" / "shard-0.zarr", 900: tmp_path / "t900" / "shard-0.zarr"}
    run_extraction(clip_store=small_store, outputs=outputs, dataset="small", model=model, shard=0,
                   clips_per_shard=2, seed=0, progress=False)
    for timestep, expert in ((500, LOW), (900, HIGH)):
        attrs = open_feature_store([outputs[timestep]]).attrs
        assert attrs["expert"] == expert and attrs["boundary_ratio"] == 0.875 and attrs["sigma"] == timestep / 1000
        assert attrs["boundary_timestep"] == 875.0 and attrs["expand_timesteps"] is False


@pytest.mark.parametrize("name", [T2V, "tiny-wan2.2-ti2v"])
def test_wan21_families_refuse_a_wan22_checkpoint(tiny, name) -> None:
    """wan-t2v on an A14B checkpoint would run the high-noise expert at every timestep, and on TI2V-5B size its
    grid by an x8 VAE: refused, naming the Wan2.2 families."""
    from extractors.wan import WanT2VExtractor

    with pytest.raises(OptionError, match=r"make it a Wan2\.2 checkpoint; use family wan2\.2-t2v"):
        WanT2VExtractor("old", {"frames": 9, "resolution": [64, 96]}, checkpoint=str(tiny[name]))
