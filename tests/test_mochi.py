"""Mochi 1 through diffusers, on a tiny random-init pipeline saved and loaded like a real checkpoint.

The strong checks compare with diffusers itself: the noisy latent with the scheduler's ``scale_noise`` and
the inverted schedule's Euler step, the transformer's inputs and block tokens with ``MochiPipeline`` run on the
same latents (and its denormalisation with our clean latents), the last block's tokens through the model's
output head with the model's output, attention captures with the attention module's own projections, and the
frame map with the VAE's actual temporal downsampling.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors import resolve_model
from extractors.base import OptionError
from extractors.diffusion import noise_level
from extractors.layers import LayerSpecError
from extractors.mochi import Mochi, MochiExtractor
from extractors.tiny_models import build_tiny_model
from tests.recording import Recorder, recorded_extract

OPTIONS = {"frames": 13, "resolution": [32, 48], "random_init": True, "max_text_tokens": 8}
GRID = (3, 2, 3)  # 13 frames -> 3 latent frames; 32x48 px / 8 / 2 -> 2x3 tokens (rows before columns)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("tiny-mochi", tmp_path_factory.mktemp("models") / "tiny-mochi")


def make(checkpoint: Path, seed: int = 0, **kwargs) -> MochiExtractor:
    model = MochiExtractor("mochi", OPTIONS, seed=seed, checkpoint=str(checkpoint), **kwargs)
    model.load()
    return model


@pytest.fixture(scope="module")
def extractor(checkpoint: Path) -> MochiExtractor:
    return make(checkpoint)


def _frames(seed: int = 0, count: int = 13, height: int = 32, width: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


# --- (a) loading, shapes, frame map ----------------------------------------------------------------------

def test_loads_through_from_pretrained_and_extracts(extractor: MochiExtractor) -> None:
    assert type(extractor.transformer).__name__ == "MochiTransformer3DModel"
    assert type(extractor.vae).__name__ == "AutoencoderKLMochi"
    assert not hasattr(extractor, "text_encoder"), "the text encoder is released after the prompt is encoded"
    mask = extractor.prompt["encoder_attention_mask"]
    assert mask.dtype == torch.bool and mask.tolist() == [[True] + [False] * 7]  # "" -> "</s>", then padding
    features, inputs = recorded_extract(extractor, _frames(), (0, 2), 500, clip=3)
    for layer in (0, 2):
        assert features.layers[layer].shape == (*GRID, 16) and features.layers[layer].dtype == np.float32
    np.testing.assert_array_equal(features.frame_index, [0, 1, 7])
    torch.testing.assert_close(inputs["encoder_attention_mask"], mask)
    assert extractor.noise_attributes(500) == {"timestep_meaning": Mochi.timestep_meaning, "sigma": 0.5,
                                               "model_timestep": 500.0}
    assert extractor.provenance()["force_zeros_for_empty_prompt"] is False


def test_frame_index_is_the_vaes_temporal_downsampling(extractor: MochiExtractor) -> None:
    """Inverting one clip frame changes latent frames from the one the frame map assigns it on (the VAE is
    causal: never an earlier one). Latent 0 is frame 0 alone, latent k >= 1 frames 6k-5 .. 6k."""
    frames = torch.from_numpy(_frames(count=19, height=16, width=16)).permute(3, 0, 1, 2)[None] / 127.5 - 1
    index = Mochi.frame_index(4)
    np.testing.assert_array_equal(index, [0, 1, 7, 13])
    with torch.inference_mode():
        base = Mochi.encode_video(extractor, frames)
        assert base.shape[2] == 4
        for frame in (0, 1, 6, 7, 12, 13, 18):
            changed = frames.clone()
            changed[:, :, frame] = -changed[:, :, frame]
            moved = (Mochi.encode_video(extractor, changed) - base).abs()
            moved = moved.amax(dim=(0, 1, 3, 4))
            first = int(np.searchsorted(index, frame, side="right")) - 1
            assert moved[:first].sum() == 0 and moved[first] > 1e-3, (frame, moved)


# --- (b) noise, timestep and the pipeline's own transformer call -----------------------------------------

def test_noisy_latent_is_the_schedulers_scale_noise(extractor: MochiExtractor) -> None:
    """sigma = timestep / 1000 in the scheduler's own forward process; the transformer gets 1000 - timestep."""
    frames, timestep, clip = _frames(1), 300, 3
    _, inputs = recorded_extract(extractor, frames, (0,), timestep, clip=clip)
    scheduler = extractor.scheduler  # as loaded: set_timesteps never ran, so its sigmas are timesteps / 1000
    with torch.inference_mode():
        x0 = Mochi.encode_video(extractor, extractor.video_tensor(frames, clip))
    noise = torch.randn(x0.shape, generator=extractor.generator(clip, timestep))
    index = int(torch.argmin((scheduler.timesteps - timestep).abs()))
    assert abs(float(scheduler.sigmas[index]) - timestep / 1000) < 1e-6
    expected = scheduler.scale_noise(x0, scheduler.timesteps[index:index + 1], noise)
    torch.testing.assert_close(inputs["hidden_states"], expected, rtol=1e-5, atol=1e-5)
    assert inputs["timestep"].tolist() == [1000.0 - timestep]
    level = Mochi.noise_level(extractor, timestep, None)
    assert (level.kind, level.value, level.fed) == ("flow", 0.3, 700.0)


def test_inverted_schedule_walks_the_same_noise_path() -> None:
    """MochiPipeline's schedule: noise levels sigma from linear_quadratic_schedule, stored inverted. The
    timestep it feeds at noise level sigma is 1000 (1 - sigma), and its Euler step with the exact velocity
    x0 - eps moves (1 - sigma) x0 + sigma eps to the next noise level: our formula and our model_timestep."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    from extractors.mochi import MOCHI_TINY

    scheduler = FlowMatchEulerDiscreteScheduler(**MOCHI_TINY["scheduler"][1])
    sigmas = linear_quadratic_schedule(64, 0.025)
    scheduler.set_timesteps(sigmas=sigmas)
    scheduler.set_begin_index(0)
    torch.manual_seed(0)
    x0, eps = torch.randn(1, 12, 2, 4, 4), torch.randn(1, 12, 2, 4, 4)
    for i, (sigma, t) in enumerate(zip(sigmas, scheduler.timesteps, strict=True)):
        assert abs(float(t) - 1000 * (1 - sigma)) < 1e-3
        current = (1 - sigma) * x0 + sigma * eps
        after = scheduler.step(x0 - eps, t, current, return_dict=False)[0]
        nxt = sigmas[i + 1] if i + 1 < len(sigmas) else 0.0
        torch.testing.assert_close(after, (1 - nxt) * x0 + nxt * eps, rtol=1e-5, atol=1e-5)
    level = noise_level(scheduler, 975)
    assert level.value == 0.975 and level.model_timestep is None  # the family, not the base, reverses it


def test_transformer_inputs_and_tokens_match_mochi_pipeline(checkpoint: Path, extractor: MochiExtractor) -> None:
    """MochiPipeline run for two steps (noise levels 1 and 0.975, fed timesteps 0 and 25) on our noisy latents:
    the transformer gets the same inputs, block 1 gives the same tokens; and our clean latents, handed to its
    decoding, are denormalised back to the VAE posterior mean."""
    from diffusers import MochiPipeline

    frames = _frames(2)
    runs = {t: recorded_extract(extractor, frames, (1,), t, clip=1) for t in (1000, 975)}
    pipe = MochiPipeline.from_pretrained(checkpoint)
    with torch.inference_mode():
        clean = Mochi.encode_video(extractor, extractor.video_tensor(frames, 1))
        mean = extractor.vae.encode(extractor.video_tensor(frames, 1)).latent_dist.mode()
    tokens, decoded = [], []

    class Decoded(Exception):
        """Raised by the VAE's decode: the latents it would decode are all this test needs."""

    def step_end(_pipe, i, _t, kwargs):
        return {"latents": runs[975][1]["hidden_states"] if i == 0 else clean}

    def decode(latents, return_dict=True):
        decoded.append(latents.clone())
        raise Decoded

    block = pipe.transformer.transformer_blocks[1]
    handle = block.register_forward_hook(lambda _m, _i, output: tokens.append(output[0].clone()))
    pipe.vae.decode = decode
    try:
        with Recorder(pipe.transformer) as recorder, pytest.raises(Decoded):
            pipe(prompt="", guidance_scale=1.0, num_inference_steps=2, num_frames=13, height=32, width=48,
                 latents=runs[1000][1]["hidden_states"], max_sequence_length=8, callback_on_step_end=step_end)
    finally:
        handle.remove()
    assert len(recorder.calls) == 2
    for (features, ours), theirs, block_tokens in zip(runs.values(), recorder.calls, tokens, strict=True):
        torch.testing.assert_close(ours["hidden_states"], theirs["hidden_states"])
        torch.testing.assert_close(ours["encoder_hidden_states"], theirs["encoder_hidden_states"])
        assert torch.equal(ours["encoder_attention_mask"], theirs["encoder_attention_mask"])
        torch.testing.assert_close(ours["timestep"], theirs["timestep"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(features.layers[1], block_tokens.reshape(*GRID, -1).numpy(), rtol=1e-4, atol=1e-5)
    assert [c["timestep"].item() for c in recorder.calls] == pytest.approx([0.0, 25.0], abs=1e-4)
    torch.testing.assert_close(decoded[0], mean, rtol=1e-5, atol=1e-5)


# --- (c) seeds, (d) early stop ---------------------------------------------------------------------------

def test_seeds_make_features_reproducible(checkpoint: Path, extractor: MochiExtractor) -> None:
    clip = _frames(count=7)  # 2 latent frames: enough here, and cheaper
    a = extractor.extract(clip, (1,), 500, clip=0).layers[1]
    np.testing.assert_array_equal(a, extractor.extract(clip, (1,), 500, clip=0).layers[1])
    assert np.abs(a - extractor.extract(clip, (1,), 500, clip=1).layers[1]).max() > 1e-3
    assert np.abs(a - extractor.extract(_frames(5, count=7), (1,), 500, clip=0).layers[1]).max() > 1e-3
    other = make(checkpoint, seed=1).extract(clip, (1,), 500, clip=0).layers[1]
    assert np.abs(a - other).max() > 1e-3


def test_blocks_after_the_deepest_requested_one_do_not_run(extractor: MochiExtractor) -> None:
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, block in enumerate(extractor.transformer.transformer_blocks)]
    try:
        extractor.extract(_frames(count=7), (0,), 500)
        assert calls == [0]
        extractor.extract(_frames(count=7), (1, 0), 500)
        assert calls == [0, 0, 1]
    finally:
        for handle in handles:
            handle.remove()


# --- (e) token layout, (f) attention captures ------------------------------------------------------------

def test_token_grid_matches_the_models_own_output_head(extractor: MochiExtractor) -> None:
    """Last-block tokens laid out as (T', h, w), through Mochi's norm_out / proj_out and unpatchified as its
    forward does, equal the model's output: a transposed or shifted grid would not."""
    transformer = extractor.transformer
    last = extractor.num_layers() - 1
    features, inputs = recorded_extract(extractor, _frames(), (last,), 400)
    t, h, w = features.layers[last].shape[:3]
    assert (t, h, w) == GRID
    tokens = torch.from_numpy(features.layers[last]).reshape(1, t * h * w, -1)
    with torch.inference_mode():
        temb, _ = transformer.time_embed(inputs["timestep"], inputs["encoder_hidden_states"],
                                         inputs["encoder_attention_mask"], hidden_dtype=tokens.dtype)
        head = transformer.proj_out(transformer.norm_out(tokens, temb))
        p = transformer.config.patch_size
        rebuilt = head.reshape(1, t, h, w, p, p, -1).permute(0, 6, 1, 2, 4, 3, 5).reshape(1, -1, t, h * p, w * p)
        (output,) = transformer(**inputs)
    assert output.shape == (1, 12, 3, 4, 6)
    torch.testing.assert_close(rebuilt, output, rtol=1e-4, atol=1e-5)


def test_attention_captures_are_the_attention_modules_own_video_projections(checkpoint: Path) -> None:
    """q/k after attn1's own RMS norms (before RoPE), v after to_v, video stream only, heads concatenated."""
    model = make(checkpoint, captures=("output", "attn_q", "attn_k", "attn_v", "attn_k.h1"))
    features, inputs = recorded_extract(model, _frames(), (1,), 500)
    attn = model.transformer.transformer_blocks[1].attn1
    seen: list[torch.Tensor] = []
    handle = attn.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(kwargs["hidden_states"].clone()),
                                            with_kwargs=True)
    try:
        with torch.inference_mode():
            model.transformer(**inputs)
    finally:
        handle.remove()
    x = seen[0]  # the block's normalised video tokens, as the processor receives them
    with torch.inference_mode():
        reference = {
            "attn_q": attn.norm_q(attn.to_q(x).unflatten(2, (attn.heads, -1))).flatten(2),
            "attn_k": attn.norm_k(attn.to_k(x).unflatten(2, (attn.heads, -1))).flatten(2),
            "attn_v": attn.to_v(x),
        }
    for kind, expected in reference.items():
        captured = features.captures[1, kind]
        assert captured.shape == (*GRID, 16), kind  # 18 video tokens: the text tokens are not there
        np.testing.assert_allclose(captured, expected[0].reshape(*GRID, -1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(features.captures[1, "attn_k.h1"], features.captures[1, "attn_k"][..., 8:])
    assert features.layers[1].shape == (*GRID, 16)


# --- (g) bad input ---------------------------------------------------------------------------------------

def test_bad_input_gives_clear_errors(checkpoint: Path, extractor: MochiExtractor, tmp_path: Path) -> None:
    entry = {"family": "mochi", "checkpoint": str(checkpoint), "timesteps": [500], "options": OPTIONS}
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_model("mochi", {**entry, "layers": [3]})
    for bad in (1001, -1):
        with pytest.raises(OptionError, match=rf"timestep {bad} is outside FlowMatchEulerDiscreteScheduler's "
                                              r"range 0\.\.1000"):
            resolve_model("mochi", {**entry, "layers": [0], "timesteps": [bad]})
    with pytest.raises(OptionError, match=r"model 'mochi': frames=12; this VAE takes 6k\+1 frames \(e\.g\. 13, 25"):
        MochiExtractor("mochi", {**OPTIONS, "frames": 12}, checkpoint=str(checkpoint))
    with pytest.raises(OptionError, match=r"model 'mochi': resolution 40x48 must be a multiple of 16"):
        MochiExtractor("mochi", {**OPTIONS, "resolution": [40, 48]}, checkpoint=str(checkpoint))
    short = extractor.extract(_frames(count=12), (0,), 500, clip=7)  # fed whole: its longest 6k+1 prefix (7)
    assert short.frame_index.tolist() == extractor.expected_frame_index(12).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"clip 7 has 0 frames, too few for this VAE"):
        extractor.input_frames(0, clip=7)
    broken = Path(shutil.copytree(checkpoint, tmp_path / "broken"))
    shutil.rmtree(broken / "vae")
    with pytest.raises(OptionError, match=r"model 'mochi': checkpoint .*broken' lacks the folder\(s\) \['vae/'\]"):
        MochiExtractor("mochi", OPTIONS, checkpoint=str(broken))
    with pytest.raises(OptionError, match=r"checkpoint '/no/such/model' does not exist"):
        MochiExtractor("mochi", OPTIONS, checkpoint="/no/such/model")
    with pytest.raises(OptionError, match="needs 'checkpoint'"):
        MochiExtractor("mochi", OPTIONS)


def _edited(checkpoint: Path, tmp_path: Path, name: str, relative: str, **changes) -> str:
    copy = Path(shutil.copytree(checkpoint, tmp_path / name, ignore=shutil.ignore_patterns("*.safetensors")))
    config = json.loads((copy / relative).read_text())
    (copy / relative).write_text(json.dumps({**config, **changes}))
    return str(copy)


def test_checkpoints_of_the_wrong_kind_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    wan = build_tiny_model("tiny-wan-t2v", tmp_path / "tiny-wan-t2v")
    with pytest.raises(OptionError, match=r"model 'm' \(checkpoint .*tiny-wan-t2v'\): the transformer is "
                                          r"WanTransformer3DModel; the mochi family needs MochiTransformer3DModel"):
        MochiExtractor("m", OPTIONS, checkpoint=str(wan))
    plain = _edited(checkpoint, tmp_path, "plain", "scheduler/scheduler_config.json", invert_sigmas=False)
    with pytest.raises(OptionError, match=r"invert_sigmas=False; MochiPipeline needs FlowMatchEulerDiscreteScheduler "
                                          r"with invert_sigmas: true"):
        MochiExtractor("m", OPTIONS, checkpoint=plain)
    wide = _edited(checkpoint, tmp_path, "wide", "transformer/config.json", in_channels=24)
    with pytest.raises(OptionError, match=r"the transformer takes 24 input channels and the VAE makes 12"):
        MochiExtractor("m", OPTIONS, checkpoint=wide)
    slow = _edited(checkpoint, tmp_path, "slow", "vae/config.json", temporal_expansions=[1, 2, 2])
    with pytest.raises(OptionError, match=r"the VAE compresses time x4; this family expects x6"):
        MochiExtractor("m", OPTIONS, checkpoint=slow)


# --- (h) shapes from configs alone, presets, planning ----------------------------------------------------

def test_feature_shape_before_loading_is_the_stored_shape(checkpoint: Path, extractor: MochiExtractor) -> None:
    planned = MochiExtractor("mochi", OPTIONS, checkpoint=str(checkpoint))  # never loaded
    for count, height, width in ((13, 40, 40), (8, 24, 40)):
        stored = extractor.extract(_frames(count=count, height=height, width=width), (0,), 500)
        assert planned.feature_shape(count, height, width) == stored.layers[0].shape
    assert planned.feature_shape(8, 24, 40) == (2, 2, 3, 16)  # 8 frames: its 7-frame prefix, 2 latents


def test_planning_reads_configs_only(tmp_path: Path) -> None:
    from extractors.checkpoints import CheckpointError, expect_checkpoint
    from extractors.tiny_models import expected_files

    location = str(tmp_path / "later" / "tiny-mochi")
    expect_checkpoint(location, expected_files("tiny-mochi"))
    planned = MochiExtractor("planned", OPTIONS, checkpoint=location)
    assert (planned.num_layers(), planned.channels(), planned.attention_heads()) == (3, 16, 2)
    assert planned.feature_shape(13, 32, 48) == (*GRID, 16)
    with pytest.raises(CheckpointError, match="not written yet"):
        planned.checkpoint.load("transformer")


def test_preset_and_defaults(checkpoint: Path) -> None:
    preset = Mochi.presets["Mochi-1-preview"]
    assert (preset.hub_id, preset.blocks, preset.channels) == ("genmo/mochi-1-preview", 48, 3072)
    assert preset.layers == (29, 32) and preset.timestep == 500
    assert MochiExtractor.default_options["frames"] == 85 and (85 - 1) % 6 == 0
    assert MochiExtractor.default_options["resolution"] == [480, 848]
    assert MochiExtractor.family == "mochi" and set(MochiExtractor.tiny_models) == {"tiny-mochi"}
    entry = {"preset": "Mochi-1-preview", "checkpoint": str(checkpoint), "layers": [0], "options": OPTIONS}
    with pytest.raises(ValueError, match=r"has 3 blocks of 16 channels, but preset 'Mochi-1-preview' is 48 blocks "
                                         r"of 3072"):
        resolve_model("mochi", entry)
