"""LTX-Video through diffusers, on a tiny random-init pipeline saved and loaded like a real checkpoint.

The strong checks compare with diffusers itself: the noise with ``LTXPipeline.prepare_latents``, the noisy latent
with the scheduler's ``scale_noise`` on a schedule set with the pipeline's resolution-dependent ``mu``, the
transformer call and a block's tokens with ``LTXPipeline`` run on the same latents, the last block's tokens
through the model's output head with its output, and attention keys with the block's own projections.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors import resolve_model
from extractors.base import OptionError
from extractors.diffusion import noise_level
from extractors.layers import LayerSpecError
from extractors.ltx import LTXVideo, LTXVideoExtractor, shift_mu
from extractors.tiny_models import build_tiny_model
from tests.recording import Recorder, recorded_extract

OPTIONS = {"frames": 17, "resolution": [64, 96], "random_init": True, "max_text_tokens": 8, "device": "cpu"}
GRID = (3, 2, 3)  # 17 frames -> 3 latent frames; 64 x 96 px / 32 -> 2 x 3 tokens
WIDTH = 16  # 2 heads x 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("tiny-ltx-video", tmp_path_factory.mktemp("models") / "tiny-ltx-video")


def make(checkpoint: Path, seed: int = 0, **options) -> LTXVideoExtractor:
    extractor = LTXVideoExtractor("ltx", {**OPTIONS, **options}, seed=seed, checkpoint=str(checkpoint))
    extractor.load()
    return extractor


@pytest.fixture(scope="module")
def extractor(checkpoint: Path) -> LTXVideoExtractor:
    return make(checkpoint)


def _frames(seed: int = 0, count: int = 17, height: int = 64, width: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def clean_latents_and_noise(extractor, frames, clip, timestep):
    """The recipe's clean latents (B, C, F, H, W) and the noise its seeded generator draws for them."""
    with torch.inference_mode():
        x0 = extractor.family_spec.encode_video(extractor, extractor.video_tensor(frames, clip))
    noise = torch.randn(x0.shape, generator=extractor.generator(clip, timestep), dtype=torch.float32)
    return x0, noise


# --- (a) loading and extraction -------------------------------------------------------------------------

def test_loads_through_from_pretrained_and_extracts(extractor: LTXVideoExtractor) -> None:
    assert type(extractor.transformer).__name__ == "LTXVideoTransformer3DModel"
    assert type(extractor.vae).__name__ == "AutoencoderKLLTXVideo"
    assert not hasattr(extractor, "text_encoder"), "the text encoder is released after the prompt is encoded"
    assert extractor.num_layers() == 3 and extractor.channels() == WIDTH and extractor.random_init
    features = extractor.extract(_frames(), (0, 2), 500, clip=3)
    for layer in (0, 2):
        array = features.layers[layer]
        assert array.shape == (*GRID, WIDTH) and array.dtype == np.float32 and np.isfinite(array).all()
    np.testing.assert_array_equal(features.frame_index, [0, 1, 9])  # causal x8 VAE
    assert extractor.noise_attributes(500) == {"timestep_meaning": LTXVideo.timestep_meaning, "sigma": 0.5}


def test_frame_index_is_the_vaes_causal_frame_map(extractor: LTXVideoExtractor) -> None:
    """Latent 0 is frame 0 alone and latent k + 1 starts at frame 8k + 1: changing frame m first changes the
    latent frame_index says starts at or before m, and none before it."""
    frames = _frames()
    base, _ = clean_latents_and_noise(extractor, frames, 0, 0)
    index = extractor.family_spec.frame_index(3)
    for m in (0, 1, 8, 9, 16):
        changed = frames.copy()
        changed[m] = 255 - changed[m]
        moved, _ = clean_latents_and_noise(extractor, changed, 0, 0)
        touched = (moved - base).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
        first = int(np.flatnonzero(index <= m)[-1])
        assert touched.tolist() == [k >= first for k in range(3)], (m, touched)


def test_prompt_is_the_pipelines_embeddings_and_mask(extractor: LTXVideoExtractor) -> None:
    prompt = extractor.prompt
    assert prompt["encoder_hidden_states"].shape == (1, 8, 16)
    assert prompt["encoder_attention_mask"].tolist() == [[True] + [False] * 7]  # "</s>" then padding, as T5


# --- (b) noise and timestep -----------------------------------------------------------------------------

def schedule_through(scheduler, mu: float, timestep: int, steps: int = 50) -> int:
    """Set ``scheduler`` as LTXPipeline does for a ``steps``-step run at ``mu`` (sigmas linspace(1, 1/steps),
    shifted with ``mu``, stretched to ``shift_terminal``), with the one input sigma nearest to ``timestep``
    moved so that the pipeline feeds the transformer ``timestep`` there. Returns that step's index."""
    config = scheduler.config
    sigmas = np.linspace(1.0, 1 / steps, steps)
    shifted = math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    stretch = (1 - shifted[-1]) / (1 - config.shift_terminal)
    wanted = 1 - stretch * (1 - timestep / config.num_train_timesteps)  # before the stretch
    step = int(np.argmin(np.abs(shifted - wanted)))
    sigmas[step] = 1 / (1 + math.exp(mu) * (1 / wanted - 1))  # before the shift
    scheduler.set_timesteps(sigmas=sigmas, mu=mu)
    return step


@pytest.mark.parametrize("timestep", [250, 500, 900])
def test_noisy_latent_is_scale_noise_at_the_shifted_schedules_step(extractor: LTXVideoExtractor,
                                                                    timestep: int) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    frames = _frames(1)
    _, ours = recorded_extract(extractor, frames, (0,), timestep, clip=5)
    x0, noise = clean_latents_and_noise(extractor, frames, 5, timestep)
    pipe = extractor.conditioning["pipeline"]
    # The noise is the pipeline's own draw: prepare_latents with the same generator gives it, packed.
    drawn = pipe.prepare_latents(1, 8, 64, 96, 17, torch.float32, torch.device("cpu"),
                                 generator=extractor.generator(5, timestep))
    torch.testing.assert_close(drawn, pipe._pack_latents(noise), rtol=0, atol=0)

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(extractor.scheduler.config)
    mu = extractor.provenance()["shift_mu"]
    step = schedule_through(scheduler, mu, timestep)
    fed = scheduler.timesteps[step]
    assert abs(float(fed) - timestep) < 1e-3  # the step whose transformer call gets this timestep
    expected = pipe._pack_latents(scheduler.scale_noise(x0, fed[None], noise))
    torch.testing.assert_close(ours["hidden_states"], expected, rtol=1e-5, atol=1e-6)
    sigma_used = float(scheduler.sigmas[step])
    assert extractor.noise_attributes(timestep)["sigma"] == pytest.approx(sigma_used, abs=1e-6)
    assert noise_level(extractor.scheduler, timestep).value == timestep / 1000
    assert ours["timestep"].tolist() == [float(timestep)] and ours["timestep"].dtype == torch.float32


def test_the_pipelines_schedule_feeds_1000_sigma_at_every_step(extractor: LTXVideoExtractor) -> None:
    """What makes the configured timestep mean sigma = t / 1000 whatever the shift: a real 50-step run at this
    clip size feeds the transformer 1000 x the sigma its latents hold, at every step."""
    scheduler = extractor.scheduler
    mu = shift_mu(dict(scheduler.config), 3 * 2 * 3)
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    assert mu == calculate_shift(18, 1024, 4096, 0.95, 2.05) == extractor.provenance()["shift_mu"]
    assert extractor.provenance()["shift_sequence_length"] == 18
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 50, 50), mu=mu)
    torch.testing.assert_close(scheduler.timesteps, scheduler.sigmas[:-1] * 1000, rtol=0, atol=0)
    assert scheduler.sigmas[-2] == pytest.approx(0.1)  # shift_terminal


def test_shift_mu_grows_with_the_clip(checkpoint: Path) -> None:
    small = LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(checkpoint)).provenance()
    large = LTXVideoExtractor("ltx", {**OPTIONS, "frames": 121, "resolution": [480, 704]},
                              checkpoint=str(checkpoint)).provenance()
    assert large["shift_sequence_length"] == 16 * 15 * 22
    assert large["shift_mu"] == pytest.approx(0.95 + (5280 - 1024) * 1.1 / 3072)  # 2.474
    assert large["shift_mu"] > small["shift_mu"]
    assert large["rope_interpolation_scale"] == [8 / 25, 32, 32] and large["frame_rate"] == 25


def test_transformer_call_and_tokens_match_ltx_pipeline(checkpoint: Path, extractor: LTXVideoExtractor) -> None:
    """LTXPipeline run for 2 steps on our noisy latents at t = 1000 (its first step: sigma 1 after the shift):
    the transformer gets the same inputs and block 1 gives the same tokens."""
    from diffusers import LTXPipeline

    features, ours = recorded_extract(extractor, _frames(2), (1,), 1000, clip=1)
    pipe = LTXPipeline.from_pretrained(checkpoint)
    tokens = {}
    recorder = Recorder(pipe.transformer)
    handle = pipe.transformer.transformer_blocks[1].register_forward_hook(
        lambda _m, _i, output: tokens.setdefault("block", output.clone()))
    try:
        pipe(prompt="", guidance_scale=1.0, num_inference_steps=2, output_type="latent", max_sequence_length=8,
             latents=ours["hidden_states"], num_frames=17, height=64, width=96)
    finally:
        handle.remove()
        recorder.remove()
    theirs = recorder.calls[0]
    assert len(recorder.calls) == 2 and theirs["timestep"].tolist() == ours["timestep"].tolist() == [1000.0]
    for key in ("hidden_states", "encoder_hidden_states", "encoder_attention_mask"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    for key in ("num_frames", "height", "width", "rope_interpolation_scale"):
        assert ours[key] == theirs[key], key
    assert ours["rope_interpolation_scale"] == (8 / 25, 32, 32)
    np.testing.assert_allclose(features.layers[1], tokens["block"].reshape(*GRID, WIDTH).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_frame_rate_sets_the_temporal_rotary_scale(checkpoint: Path, extractor: LTXVideoExtractor) -> None:
    other = make(checkpoint, frame_rate=12.5)
    base, _ = recorded_extract(extractor, _frames(), (0,), 500)
    slow, inputs = recorded_extract(other, _frames(), (0,), 500)
    assert inputs["rope_interpolation_scale"] == (8 / 12.5, 32, 32)
    assert np.abs(slow.layers[0] - base.layers[0]).max() > 1e-4


# --- (c) seeds ------------------------------------------------------------------------------------------

def test_seeds_make_features_reproducible(checkpoint: Path, extractor: LTXVideoExtractor) -> None:
    a = extractor.extract(_frames(), (1,), 500, clip=0).layers[1]
    np.testing.assert_array_equal(a, extractor.extract(_frames(), (1,), 500, clip=0).layers[1])
    assert np.abs(a - extractor.extract(_frames(), (1,), 500, clip=1).layers[1]).max() > 1e-4
    assert np.abs(a - extractor.extract(_frames(7), (1,), 500, clip=0).layers[1]).max() > 1e-4
    other = make(checkpoint, seed=1)
    assert np.abs(a - other.extract(_frames(), (1,), 500, clip=0).layers[1]).max() > 1e-4


# --- (d) early stop -------------------------------------------------------------------------------------

def test_blocks_after_the_deepest_requested_one_do_not_run(extractor: LTXVideoExtractor) -> None:
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, block in enumerate(extractor.transformer.transformer_blocks)]
    try:
        extractor.extract(_frames(), (0,), 500)
        assert calls == [0]
        extractor.extract(_frames(), (1, 0), 500)
        assert calls == [0, 0, 1]
    finally:
        for handle in handles:
            handle.remove()


# --- (e) token layout -----------------------------------------------------------------------------------

def test_token_grid_matches_the_models_own_output_head(extractor: LTXVideoExtractor) -> None:
    """Last-block tokens laid out as (T', h, w), through LTX's output head (norm_out, the timestep's scale and
    shift, proj_out), must equal the model's output unpacked by LTXPipeline._unpack_latents."""
    transformer, pipe = extractor.transformer, extractor.conditioning["pipeline"]
    last = extractor.num_layers() - 1
    features, inputs = recorded_extract(extractor, _frames(3), (last,), 400)
    cells = torch.from_numpy(features.layers[last])  # (T', h, w, D)
    with torch.inference_mode():
        _, embedded = transformer.time_embed(inputs["timestep"].flatten(), batch_size=1, hidden_dtype=torch.float32)
        shift, scale = (transformer.scale_shift_table[None] + embedded[:, None]).unbind(1)
        head = transformer.proj_out(transformer.norm_out(cells) * (1 + scale[0]) + shift[0])
        (output,) = transformer(**{**inputs, "return_dict": False})
    unpacked = pipe._unpack_latents(output, *GRID)[0]  # (C, F, H, W)
    torch.testing.assert_close(head.permute(3, 0, 1, 2), unpacked, rtol=1e-4, atol=1e-5)


# --- (f) attention capture ------------------------------------------------------------------------------

def test_attention_captures_are_the_blocks_own_projections(checkpoint: Path) -> None:
    captures = ("output", "attn_q", "attn_k", "attn_v", "attn_k.h1")
    model = LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(checkpoint), captures=captures)
    model.load()
    features, inputs = recorded_extract(model, _frames(4), (1,), 600)
    attention = model.transformer.transformer_blocks[1].attn1
    seen = {}

    def record(_module, _args, kwargs):
        seen.setdefault("x", kwargs["hidden_states"].clone())

    handle = attention.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            model.transformer(**{**inputs, "return_dict": False})
    finally:
        handle.remove()
    x = seen["x"]  # self-attention over video tokens only: text enters through attn2
    with torch.inference_mode():
        reference = {"attn_q": attention.norm_q(attention.to_q(x)), "attn_k": attention.norm_k(attention.to_k(x)),
                     "attn_v": attention.to_v(x)}
    for kind, value in reference.items():
        np.testing.assert_allclose(features.captures[1, kind], value.reshape(*GRID, WIDTH).numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=kind)
    np.testing.assert_array_equal(features.captures[1, "attn_k.h1"], features.captures[1, "attn_k"][..., 8:])
    assert model.attention_heads() == 2


# --- (g) bad input --------------------------------------------------------------------------------------

def test_bad_input_gives_clear_errors(checkpoint: Path, extractor: LTXVideoExtractor, tmp_path: Path) -> None:
    entry = {"family": "ltx-video", "checkpoint": str(checkpoint), "timesteps": [500], "options": OPTIONS}
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_model("ltx", {**entry, "layers": [3]})
    with pytest.raises(OptionError, match=r"1001 is outside FlowMatchEulerDiscreteScheduler's range 0\.\.1000"):
        resolve_model("ltx", {**entry, "layers": [0], "timesteps": [1001]})
    with pytest.raises(OptionError, match=r"'ltx': frames=16; this VAE takes 8k\+1 frames \(e\.g\. 17, 33, 49\)"):
        LTXVideoExtractor("ltx", {**OPTIONS, "frames": 16}, checkpoint=str(checkpoint))
    with pytest.raises(OptionError, match=r"'ltx': resolution 64x80 must be a multiple of 32"):
        LTXVideoExtractor("ltx", {**OPTIONS, "resolution": [64, 80]}, checkpoint=str(checkpoint))
    for rate in (0, -25, "25", True):
        with pytest.raises(OptionError, match=rf"frame_rate={rate!r} must be a positive number"):
            LTXVideoExtractor("ltx", {**OPTIONS, "frame_rate": rate}, checkpoint=str(checkpoint))
    with pytest.raises(OptionError, match=r"unknown option\(s\) \['fps'\]"):
        LTXVideoExtractor("ltx", {**OPTIONS, "fps": 24}, checkpoint=str(checkpoint))
    with pytest.raises(ValueError, match=r"model 'ltx': clip 4 has 0 frames, too few for this VAE"):
        extractor.input_frames(0, clip=4)
    broken = Path(shutil.copytree(checkpoint, tmp_path / "broken"))
    shutil.rmtree(broken / "vae")
    with pytest.raises(OptionError, match=r"'ltx'.*lacks the folder\(s\) \['vae/'\]"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(broken))
    with pytest.raises(OptionError, match=r"checkpoint '/no/such/model' does not exist"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint="/no/such/model")
    with pytest.raises(OptionError, match="needs 'checkpoint'"):
        LTXVideoExtractor("ltx", OPTIONS)


def _edited(checkpoint: Path, where: Path, relative: str, **changes) -> Path:
    copy = Path(shutil.copytree(checkpoint, where))
    config = json.loads((copy / relative).read_text())
    (copy / relative).write_text(json.dumps({**config, **changes}))
    return copy


def test_checkpoints_of_another_kind_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    condition = _edited(checkpoint, tmp_path / "condition", "model_index.json", _class_name="LTXConditionPipeline")
    with pytest.raises(OptionError, match=r"'ltx' \(checkpoint .*condition'\): it is an LTXConditionPipeline "
                                          r"checkpoint \(LTX-Video 0\.9\.5 or later\)"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(condition))
    other = _edited(checkpoint, tmp_path / "other", "model_index.json",
                    transformer=["diffusers", "CogVideoXTransformer3DModel"])
    with pytest.raises(OptionError, match=r"its transformer is a CogVideoXTransformer3DModel, not a "
                                          r"LTXVideoTransformer3DModel"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(other))
    patched = _edited(checkpoint, tmp_path / "patched", "transformer/config.json", patch_size=2)
    with pytest.raises(OptionError, match=r"patch size \(1, 2, 2\)"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(patched))
    wide = _edited(checkpoint, tmp_path / "wide", "transformer/config.json", in_channels=16)
    with pytest.raises(OptionError, match="the transformer takes 16 channels and the VAE makes 8"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(wide))
    slow = _edited(checkpoint, tmp_path / "x4", "vae/config.json", temporal_compression_ratio=4)
    with pytest.raises(OptionError, match=r"the VAE compresses time x4; this family expects x8"):
        LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(slow))


def test_preset_facts_are_checked_against_the_checkpoint(checkpoint: Path) -> None:
    preset = LTXVideo.presets["LTX-Video"]
    assert (preset.hub_id, preset.blocks, preset.channels, preset.timestep) == ("Lightricks/LTX-Video", 28, 2048, 500)
    assert preset.layers == (round(28 * 18 / 30), round(28 * 20 / 30)) == (17, 19)
    assert dict(preset.options) == {"frames": 121, "resolution": [480, 704], "max_text_tokens": 128}
    entry = {"preset": "LTX-Video", "checkpoint": str(checkpoint), "layers": [0], "options": OPTIONS}
    with pytest.raises(ValueError, match=r"has 3 blocks of 16 channels, but preset 'LTX-Video' is 28 blocks of "
                                         r"2048"):
        resolve_model("ltx", entry)


# --- (h) shapes before loading --------------------------------------------------------------------------

def test_feature_shape_before_loading_is_the_stored_shape(checkpoint: Path, extractor: LTXVideoExtractor) -> None:
    planned = LTXVideoExtractor("ltx", OPTIONS, checkpoint=str(checkpoint))  # configs only, nothing loaded
    assert not hasattr(planned, "transformer")
    for size, grid in (((17, 40, 40), (3, 2, 3)), ((12, 24, 40), (2, 2, 3)), ((9, 64, 96), (2, 2, 3))):
        features = extractor.extract(_frames(0, *size), (2,), 500, clip=0)  # resized to the resolution option
        assert planned.feature_shape(*size) == features.layers[2].shape == (*grid, WIDTH), size
        np.testing.assert_array_equal(planned.expected_frame_index(size[0]), features.frame_index)
    assert planned.feature_shape(0, 40, 40) is None


def test_planned_checkpoint_counts_layers_without_weights(tmp_path: Path) -> None:
    from extractors.checkpoints import CheckpointError, expect_checkpoint
    from extractors.tiny_models import expected_files

    location = str(tmp_path / "later" / "tiny-ltx-video")
    expect_checkpoint(location, expected_files("tiny-ltx-video"))
    planned = LTXVideoExtractor("planned", OPTIONS, checkpoint=location)
    assert planned.num_layers() == 3 and planned.feature_shape(17, 64, 96) == (*GRID, WIDTH)
    with pytest.raises(CheckpointError, match="not written yet"):
        planned.checkpoint.load("transformer")


# --- the store ------------------------------------------------------------------------------------------

def test_a_job_records_sigma_and_the_shift(checkpoint: Path, small_store: Path, tmp_path: Path) -> None:
    from extractors import open_feature_store
    from extractors.job import run_extraction

    options = {**OPTIONS, "frames": 9, "resolution": [64, 64]}
    model = resolve_model("ltx", {"family": "ltx-video", "checkpoint": str(checkpoint), "layers": [-1],
                                  "timesteps": [500], "options": options})
    output = tmp_path / "t500" / "shard-0.zarr"
    run_extraction(clip_store=small_store, outputs={500: output}, dataset="small", model=model, shard=0,
                   clips_per_shard=2, seed=0, progress=False)
    attrs = open_feature_store([output]).attrs
    assert attrs["timestep"] == 500 and attrs["sigma"] == 0.5 and attrs["random_init"] is True
    assert attrs["shift_sequence_length"] == 2 * 2 * 2 and attrs["frame_rate"] == 25
    assert attrs["shift_mu"] == pytest.approx(shift_mu(LTXVideo.tiny_models["tiny-ltx-video"]["scheduler"][1], 8))
    assert attrs["timestep_meaning"] == "value fed to the denoiser (0 = clean, sigma = t/1000)"
