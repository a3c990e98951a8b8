"""CogVideoX families on tiny random-init pipelines built in a temp dir and loaded with ``from_pretrained``.

The strong checks compare with diffusers itself: the noisy latent with the scheduler's ``add_noise``, the
captured tokens with the pipelines' own transformer call (``CogVideoXPipeline`` / ``CogVideoXImageToVideoPipeline``
run for one step on the same latents), and the last block's tokens, through the model's output head and
unpatchify, with the model's output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.base import OptionError
from extractors.cogvideox import (
    COGVIDEOX_TINY,
    CogVideoXI2V,
    CogVideoXI2VExtractor,
    CogVideoXT2VExtractor,
)
from extractors.diffusion import noise_level
from extractors.layers import LayerSpecError, resolve_layers
from tests.recording import Recorder, recorded_extract

T2V_OPTIONS = {"frames": 9, "resolution": [32, 48], "random_init": True, "max_text_tokens": 8}
I2V_OPTIONS = {"frames": 17, "resolution": [64, 64], "random_init": True, "max_text_tokens": 8}  # its sample size
T2V_MODELS = ["tiny-cogvideox-t2v", "tiny-cogvideox-rope"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """The three tiny CogVideoX pipelines, registered as tiny models and written with build_tiny_model."""
    from extractors.tiny_models import TINY_MODELS, build_tiny_model

    root = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        for name, spec in COGVIDEOX_TINY.items():
            patch.setitem(TINY_MODELS, name, spec)
        yield {name: build_tiny_model(name, root / name) for name in COGVIDEOX_TINY}


def make(tiny, name: str, seed: int = 0, **options):
    cls = CogVideoXI2VExtractor if name.endswith("i2v") else CogVideoXT2VExtractor
    base = I2V_OPTIONS if name.endswith("i2v") else T2V_OPTIONS
    extractor = cls(name, {**base, **options}, seed=seed, checkpoint=str(tiny[name]))
    extractor.load()
    return extractor


@pytest.fixture(scope="module")
def loaded(tiny):
    return {name: make(tiny, name) for name in COGVIDEOX_TINY}


def video(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random video (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (frames, height // 8 + 1, width // 8 + 1, 3))
    fine = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :height, :width]
    return (0.7 * fine + 0.3 * rng.uniform(0, 255, fine.shape)).astype(np.uint8)


def clip_for(extractor) -> np.ndarray:
    return video(extractor.options["frames"], *extractor.options["resolution"])


# --- loading and shapes --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", T2V_MODELS)
def test_extract_shapes_and_frame_index(loaded, name):
    extractor = loaded[name]
    assert extractor.num_layers() == 3 and extractor.random_init
    config = extractor.transformer.config
    features = extractor.extract(clip_for(extractor), (0, 2), 250, clip=0)
    width = config.num_attention_heads * config.attention_head_dim
    assert sorted(features.layers) == [0, 2]
    for layer in features.layers.values():
        assert layer.shape == (3, 2, 3, width) and layer.dtype == np.float32 and np.isfinite(layer).all()
    assert features.frame_index.tolist() == [0, 1, 5]
    assert extractor.provenance()["scheduler"] == "CogVideoXDDIMScheduler"
    assert extractor.noise_attributes(250) == {"timestep_meaning": "value fed to the denoiser (0 = clean)",
                                               "alpha_bar": float(extractor.scheduler.alphas_cumprod[250])}


def test_rotary_only_where_the_config_says(loaded):
    assert loaded["tiny-cogvideox-t2v"].conditioning["pipeline"] is None
    rope = loaded["tiny-cogvideox-rope"]
    _, inputs = recorded_extract(rope, clip_for(rope), (0,), 250)
    cos, sin = inputs["image_rotary_emb"]
    assert cos.shape == sin.shape == (3 * 2 * 3, rope.transformer.config.attention_head_dim)
    _, inputs = recorded_extract(loaded["tiny-cogvideox-t2v"], clip_for(rope), (0,), 250)
    assert "image_rotary_emb" not in inputs


def test_expected_checkpoint_counts_layers_without_weights(tiny, tmp_path):
    from extractors.checkpoints import CheckpointError, expect_checkpoint
    from extractors.tiny_models import expected_files

    location = str(tmp_path / "later" / "tiny-cogvideox-rope")
    expect_checkpoint(location, expected_files("tiny-cogvideox-rope"))
    extractor = CogVideoXT2VExtractor("planned", T2V_OPTIONS, checkpoint=location)
    assert extractor.num_layers() == 3
    with pytest.raises(CheckpointError, match="not written yet"):
        extractor.checkpoint.load("transformer")


# --- the recipe ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("timestep", [0, 250, 999])
def test_noisy_latent_is_the_schedulers_add_noise(loaded, timestep, monkeypatch):
    """As CogVideoXVideoToVideoPipeline.prepare_latents noises a video (posterior mean instead of a sample):
    VAE latents x scaling_factor in (B, F, C, H, W), then scheduler.add_noise with the seeded generator."""
    from diffusers import CogVideoXVideoToVideoPipeline
    from diffusers.pipelines.cogvideo import pipeline_cogvideox_video2video as v2v

    monkeypatch.setattr(v2v, "retrieve_latents", lambda output, generator=None: output.latent_dist.mode())
    extractor = loaded["tiny-cogvideox-rope"]
    frames = clip_for(extractor)
    _, inputs = recorded_extract(extractor, frames, (0,), timestep, clip=3)
    pipe = CogVideoXVideoToVideoPipeline(tokenizer=None, text_encoder=None, vae=extractor.vae,
                                         transformer=extractor.transformer, scheduler=extractor.scheduler)
    with torch.inference_mode():
        expected = pipe.prepare_latents(extractor.video_tensor(frames, 3), 1, 4, 32, 48, torch.float32, "cpu",
                                        generator=extractor.generator(3, timestep),
                                        timestep=torch.tensor([timestep]))
    assert expected.shape == (1, 3, 4, 4, 6)  # (B, F, C, H, W)
    torch.testing.assert_close(inputs["hidden_states"], expected, rtol=1e-5, atol=1e-5)
    level = noise_level(extractor.scheduler, timestep)
    assert level.kind == "ddpm" and level.value == float(extractor.scheduler.alphas_cumprod[timestep])
    assert inputs["timestep"].tolist() == [timestep]


def test_snr_shifted_schedule_of_the_2b_checkpoint(loaded):
    scheduler = loaded["tiny-cogvideox-t2v"].scheduler
    assert scheduler.config.snr_shift_scale == 3.0 and scheduler.config.prediction_type == "v_prediction"
    assert noise_level(scheduler, 999).value < 1e-6  # zero terminal SNR
    assert 0.99 < noise_level(scheduler, 0).value < 1.0


def test_same_seed_same_features_other_seed_different(tiny, loaded):
    frames = clip_for(loaded["tiny-cogvideox-t2v"])
    first = loaded["tiny-cogvideox-t2v"].extract(frames, (1,), 500, clip=2).layers[1]
    again = make(tiny, "tiny-cogvideox-t2v", seed=0).extract(frames, (1,), 500, clip=2).layers[1]
    other = make(tiny, "tiny-cogvideox-t2v", seed=1).extract(frames, (1,), 500, clip=2).layers[1]
    other_clip = loaded["tiny-cogvideox-t2v"].extract(frames, (1,), 500, clip=5).layers[1]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3 and np.abs(first - other_clip).max() > 1e-3


def test_noise_draws_average(tiny):
    extractor = make(tiny, "tiny-cogvideox-t2v", noise_draws=2)
    frames = clip_for(extractor)
    features, _ = recorded_extract(extractor, frames, (0,), 500)
    assert features.layers[0].shape == (3, 2, 3, 16)


@pytest.mark.parametrize("name", list(COGVIDEOX_TINY))
def test_blocks_after_the_deepest_requested_do_not_run(loaded, name):
    extractor = loaded[name]
    blocks = extractor.transformer.transformer_blocks
    calls = {1: 0, 2: 0}
    handles = [blocks[i].register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1)) for i in calls]
    try:
        extractor.extract(clip_for(extractor), (0,), 250)
        assert calls == {1: 0, 2: 0}
        extractor.extract(clip_for(extractor), (0, 1), 250)
        assert calls == {1: 1, 2: 0}
    finally:
        for handle in handles:
            handle.remove()


# --- token layout --------------------------------------------------------------------------------------

def output_head(transformer, tokens: torch.Tensor, timestep: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """The model's own norm_final / norm_out / proj_out and unpatchify, applied to (1, N, D) block tokens."""
    emb = transformer.time_embedding(transformer.time_proj(torch.tensor([timestep])).to(tokens.dtype))
    hidden = transformer.proj_out(transformer.norm_out(transformer.norm_final(tokens), temb=emb))
    p = transformer.config.patch_size
    frames, height, width = grid
    output = hidden.reshape(1, frames, height, width, -1, p, p)
    return output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)


@pytest.mark.parametrize("name", T2V_MODELS)
def test_last_block_tokens_through_the_output_head_give_the_model_output(loaded, name):
    extractor = loaded[name]
    last = extractor.num_layers() - 1
    features, inputs = recorded_extract(extractor, clip_for(extractor), (last,), 400)
    grid = features.layers[last].shape[:3]
    assert grid == (3, 2, 3)  # 32x48 pixels -> 4x6 latents -> 2x3 tokens: rows before columns
    with torch.inference_mode():
        (full,) = extractor.family_spec.forward(extractor, extractor.transformer, inputs["hidden_states"],
                                                noise_level(extractor.scheduler, 400), {})
        tokens = torch.from_numpy(features.layers[last]).reshape(1, -1, features.layers[last].shape[-1])
        rebuilt = output_head(extractor.transformer, tokens, 400, grid)
    assert full.shape == (1, 3, 4, 4, 6)
    torch.testing.assert_close(rebuilt, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", T2V_MODELS)
def test_a_changed_region_changes_its_own_grid_cells(loaded, name):
    """Change the top-right quadrant (all frames), then the last 4 frames (all pixels): layer 0 moves most there.

    The VAE's receptive field spreads a change a few latent cells past its edge, so the comparison is with the
    opposite (bottom-left) quadrant, which is also where a row/column swap would put the change."""
    extractor = loaded[name]
    frames = video(9, 128, 128, seed=1)
    resolution = {"resolution": [128, 128]}
    extractor.options.update(resolution)
    try:
        base = extractor.extract(frames, (0,), 0).layers[0]  # grid (3, 8, 8)
        quadrant = frames.copy()
        quadrant[:, :64, 64:] = 255 - quadrant[:, :64, 64:]
        moved = np.abs(extractor.extract(quadrant, (0,), 0).layers[0] - base).mean(axis=(0, 3))
        late = frames.copy()
        late[5:] = 255 - late[5:]
        moved_t = np.abs(extractor.extract(late, (0,), 0).layers[0] - base).mean(axis=(1, 2, 3))
    finally:
        extractor.options.update(T2V_OPTIONS)
    inside, opposite = moved[:4, 4:].mean(), moved[4:, :4].mean()
    assert inside > 5 * opposite, (inside, opposite)
    assert moved_t[2] > 5 * max(moved_t[0], moved_t[1]), moved_t  # frames 5-8 are latent frame 2 only


# --- parity with the pipelines' own transformer call ---------------------------------------------------

def pipeline_block_output(pipe, layer: int, **call) -> tuple[torch.Tensor, dict]:
    """Run ``pipe`` for one step; return block ``layer``'s video tokens and the transformer's inputs."""
    captured = {}
    recorder = Recorder(pipe.transformer)

    def record(_module, _inputs, output):
        captured.setdefault("tokens", output[0].clone())

    handle = pipe.transformer.transformer_blocks[layer].register_forward_hook(record)
    try:
        pipe(prompt="", guidance_scale=1.0, num_inference_steps=1, output_type="latent", max_sequence_length=8,
             **call)
    finally:
        handle.remove()
        recorder.remove()
    assert len(recorder.calls) == 1
    return captured["tokens"], recorder.calls[0]


@pytest.mark.parametrize("name", T2V_MODELS)
def test_tokens_match_cogvideox_pipeline(tiny, loaded, name):
    from diffusers import CogVideoXPipeline

    extractor = loaded[name]
    # One trailing step is timestep 999: the pipeline's first transformer call, on our noisy latents.
    features, ours = recorded_extract(extractor, clip_for(extractor), (1,), 999)
    pipe = CogVideoXPipeline.from_pretrained(tiny[name])
    height, width = extractor.options["resolution"]
    tokens, theirs = pipeline_block_output(pipe, 1, latents=ours["hidden_states"], num_frames=9, height=height,
                                           width=width)
    torch.testing.assert_close(ours["encoder_hidden_states"], theirs["encoder_hidden_states"])
    assert ours["timestep"].tolist() == theirs["timestep"].tolist() == [999]
    if theirs["image_rotary_emb"] is not None:
        for a, b in zip(ours["image_rotary_emb"], theirs["image_rotary_emb"], strict=True):
            torch.testing.assert_close(a, b)
    expected = tokens.reshape(features.layers[1].shape).numpy()
    np.testing.assert_allclose(features.layers[1], expected, rtol=1e-5, atol=1e-5)


def test_i2v_matches_image_to_video_pipeline(tiny, loaded, monkeypatch):
    """Condition latents and tokens as CogVideoXImageToVideoPipeline makes them (its image latents made
    deterministic: the posterior mean, as the recipe takes, instead of a sample)."""
    from diffusers import CogVideoXImageToVideoPipeline
    from diffusers.pipelines.cogvideo import pipeline_cogvideox_image2video as i2v

    monkeypatch.setattr(i2v, "retrieve_latents", lambda output, generator=None: output.latent_dist.mode())
    extractor = loaded["tiny-cogvideox-i2v"]
    frames = clip_for(extractor)
    features, ours = recorded_extract(extractor, frames, (2,), 999)
    assert features.layers[2].shape == (5, 4, 4, 32)
    assert features.frame_index.tolist() == [0, 1, 5, 9, 13]
    hidden = ours["hidden_states"]
    assert hidden.shape == (1, 5, 8, 8, 8)  # noisy latents (4 channels) then condition latents (4 channels)
    assert hidden[:, 1:, 4:].abs().max() == 0 and hidden[:, :1, 4:].abs().max() > 0

    pipe = CogVideoXImageToVideoPipeline.from_pretrained(tiny["tiny-cogvideox-i2v"])
    image = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255.0  # [0, 1]; the pipeline rescales
    tokens, theirs = pipeline_block_output(pipe, 2, image=image, latents=hidden[:, :, :4], num_frames=17,
                                           height=64, width=64)
    torch.testing.assert_close(hidden, theirs["hidden_states"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features.layers[2], tokens.reshape(5, 4, 4, 32).numpy(), rtol=1e-4, atol=1e-5)


def test_i2v_features_depend_on_the_first_frame_through_the_condition(loaded, monkeypatch):
    extractor = loaded["tiny-cogvideox-i2v"]
    frames = clip_for(extractor)
    base, inputs = recorded_extract(extractor, frames, (1,), 500)
    first = frames.copy()
    first[0] = 255 - first[0]
    changed, changed_inputs = recorded_extract(extractor, first, (1,), 500)
    assert np.abs(changed.layers[1][-1] - base.layers[1][-1]).max() > 1e-3  # even the last latent frame
    assert (changed_inputs["hidden_states"][:, :, 4:] - inputs["hidden_states"][:, :, 4:]).abs().max() > 1e-3
    last = frames.copy()
    last[-1] = 255 - last[-1]
    _, last_inputs = recorded_extract(extractor, last, (1,), 500)
    torch.testing.assert_close(last_inputs["hidden_states"][:, :, 4:], inputs["hidden_states"][:, :, 4:])

    zeros = staticmethod(lambda vae, video, latent_frames: torch.zeros_like(inputs["hidden_states"][:, :, 4:]))
    monkeypatch.setattr(CogVideoXI2V, "condition_latents", zeros)
    unconditioned = extractor.extract(frames, (1,), 500).layers[1]
    assert np.abs(unconditioned - base.layers[1]).max() > 1e-3


# --- bad input -----------------------------------------------------------------------------------------

def test_layer_out_of_range(loaded):
    extractor = loaded["tiny-cogvideox-t2v"]
    assert resolve_layers([-1], extractor.num_layers()) == (2,)
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_layers([0, 3], extractor.num_layers(), model=extractor.name)


def test_timestep_the_scheduler_cannot_represent_fails_at_noise(loaded):
    extractor = loaded["tiny-cogvideox-t2v"]
    with pytest.raises(ValueError, match=r"timestep 1000 is outside CogVideoXDDIMScheduler's range 0\.\.999"):
        extractor.extract(clip_for(extractor), (0,), 1000)
    with pytest.raises(ValueError, match="timestep -1"):
        noise_level(extractor.scheduler, -1)


def test_check_timestep_names_the_range(loaded):
    extractor = loaded["tiny-cogvideox-t2v"]
    extractor.check_timestep(999)
    with pytest.raises(OptionError, match=r"timestep 1000 is outside CogVideoXDDIMScheduler's range 0\.\.999"):
        extractor.check_timestep(1000)


def test_short_clip_is_fed_whole_and_never_past_its_end(loaded):
    extractor = loaded["tiny-cogvideox-t2v"]
    short = extractor.extract(clip_for(extractor)[:7], (0,), 250, clip=4)  # its longest 4k+1 prefix: 5 frames
    assert short.frame_index.tolist() == extractor.expected_frame_index(7).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"clip 4 has 0 frames, too few for this VAE"):
        extractor.input_frames(0, clip=4)


def test_checkpoint_missing_a_component_fails_at_construction(tiny, tmp_path):
    broken = Path(shutil.copytree(tiny["tiny-cogvideox-t2v"], tmp_path / "broken"))
    shutil.rmtree(broken / "vae")
    with pytest.raises(ValueError, match=r"lacks .*vae"):
        CogVideoXT2VExtractor("broken", T2V_OPTIONS, checkpoint=str(broken))
    with pytest.raises(OptionError, match="needs 'checkpoint'"):
        CogVideoXT2VExtractor("none", T2V_OPTIONS)
    with pytest.raises(OptionError, match="does not exist"):
        CogVideoXT2VExtractor("nowhere", T2V_OPTIONS, checkpoint=str(tmp_path / "nowhere"))


@pytest.mark.parametrize(("name", "options", "message"), [
    ("tiny-cogvideox-t2v", {"frames": 8}, r"frames=8; this VAE takes 4k\+1 frames"),
    ("tiny-cogvideox-t2v", {"resolution": [40, 48]}, "must be a multiple of 16"),
    ("tiny-cogvideox-t2v", {"max_text_tokens": 16}, "max_text_seq_length=8"),
    ("tiny-cogvideox-t2v", {"bogus": 1}, r"unknown option\(s\) \['bogus'\]"),
    ("tiny-cogvideox-i2v", {"frames": 9}, "learned positional embeddings fix the input to 17 frames at 64x64"),
    ("tiny-cogvideox-i2v", {"resolution": [32, 32]}, "learned positional embeddings"),
])
def test_bad_options(tiny, name, options, message):
    cls = CogVideoXI2VExtractor if name.endswith("i2v") else CogVideoXT2VExtractor
    base = I2V_OPTIONS if name.endswith("i2v") else T2V_OPTIONS
    with pytest.raises(OptionError, match=message):
        cls(name, {**base, **options}, checkpoint=str(tiny[name]))


def test_rotary_model_takes_any_text_length(tiny):
    extractor = CogVideoXT2VExtractor("rope", {**T2V_OPTIONS, "max_text_tokens": 16},
                                      checkpoint=str(tiny["tiny-cogvideox-rope"]))
    assert extractor.options["max_text_tokens"] == 16


def test_checkpoint_of_the_other_family_is_refused(tiny):
    with pytest.raises(OptionError, match=r"takes 8 input channels and the VAE makes 4.*cogvideox-i2v"):
        CogVideoXT2VExtractor("wrong", I2V_OPTIONS, checkpoint=str(tiny["tiny-cogvideox-i2v"]))
    with pytest.raises(OptionError, match=r"takes 4 input channels.*cogvideox-t2v"):
        CogVideoXI2VExtractor("wrong", T2V_OPTIONS, checkpoint=str(tiny["tiny-cogvideox-t2v"]))


def test_cogvideox_1_5_is_refused(tiny, tmp_path):
    import json

    copy = Path(shutil.copytree(tiny["tiny-cogvideox-rope"], tmp_path / "v15"))
    config = json.loads((copy / "transformer" / "config.json").read_text())
    (copy / "transformer" / "config.json").write_text(json.dumps({**config, "patch_size_t": 2}))
    with pytest.raises(OptionError, match=r"patch_size_t=2 \(CogVideoX 1\.5\) is not supported"):
        CogVideoXT2VExtractor("v15", T2V_OPTIONS, checkpoint=str(copy))


def test_defaults_are_the_papers(tiny):
    defaults = CogVideoXT2VExtractor.default_options
    assert defaults["frames"] == 49 and defaults["resolution"] == [480, 720] and defaults["max_text_tokens"] == 226
    assert CogVideoXI2VExtractor.default_options == defaults
    assert CogVideoXT2VExtractor.family == "cogvideox-t2v" and CogVideoXI2VExtractor.family == "cogvideox-i2v"
