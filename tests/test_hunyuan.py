"""HunyuanVideo on a tiny random-init pipeline (2 dual-stream + 2 single-stream blocks) saved and loaded like a
real checkpoint.

The strong checks compare with diffusers itself: the noisy latent with the scheduler's ``scale_noise`` at the
pipeline's own timestep, the transformer's inputs and a block's tokens with ``HunyuanVideoPipeline`` run for
one step on the same latents, the last block's tokens through the model's output head with its output, and
the captured attention q/k/v with the attention modules' own projections.
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
from extractors.diffusion import NoiseLevel, noise_level
from extractors.hunyuan import HunyuanVideo, HunyuanVideoExtractor
from extractors.layers import LayerSpecError
from extractors.tiny_models import build_tiny_model
from tests.recording import Recorder, recorded_extract

OPTIONS = {"frames": 9, "resolution": [32, 48], "random_init": True, "max_text_tokens": 8}
GRID = (3, 2, 3)  # 9 frames -> 3 latents; 32x48 px / 8 / 2 -> 2x3 tokens
TEXT = 8  # max_text_tokens


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("tiny-hunyuan-video", tmp_path_factory.mktemp("models") / "tiny-hunyuan-video")


def make(checkpoint: Path, seed: int = 0, captures: tuple[str, ...] = ("output",), **options) -> HunyuanVideoExtractor:
    extractor = HunyuanVideoExtractor("hunyuan", {**OPTIONS, **options}, seed=seed, checkpoint=str(checkpoint),
                                      captures=captures)
    extractor.load()
    return extractor


@pytest.fixture(scope="module")
def extractor(checkpoint: Path) -> HunyuanVideoExtractor:
    return make(checkpoint)


def _frames(seed: int = 0, count: int = 9, size: tuple[int, int] = (32, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


# --- (a) loading and extraction --------------------------------------------------------------------------

def test_loads_through_from_pretrained_and_extracts(extractor: HunyuanVideoExtractor) -> None:
    assert type(extractor.transformer).__name__ == "HunyuanVideoTransformer3DModel"
    assert type(extractor.vae).__name__ == "AutoencoderKLHunyuanVideo"
    assert not hasattr(extractor, "text_encoder"), "the text encoders are released after the prompt is encoded"
    assert extractor.num_layers() == 4 and extractor.channels() == 16 and extractor.attention_heads() == 2
    features = extractor.extract(_frames(), (0, 1, 2, 3), 500, clip=3)  # dual 0, 1 then single 0, 1
    for layer in range(4):
        assert features.layers[layer].shape == (*GRID, 16)
    np.testing.assert_array_equal(features.frame_index, [0, 1, 5])
    assert extractor.noise_attributes(500)["sigma"] == 0.5
    assert extractor.provenance()["guidance_scale"] == 6.0


def test_empty_prompt_is_the_pipelines_with_the_template_cropped_before_the_prompt(
        extractor: HunyuanVideoExtractor, checkpoint: Path) -> None:
    """The tiny tokenizer splits the template as Llama 3's does: its 95 tokens (BOS included) are exactly the
    pipeline's crop_start, so the kept tokens start at the prompt: <|eot_id|> (the empty prompt), then padding."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint / "tokenizer")
    ids = tokenizer(DEFAULT_PROMPT_TEMPLATE["template"].format(""))["input_ids"]
    assert len(ids) == DEFAULT_PROMPT_TEMPLATE["crop_start"] + 1 and tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids[DEFAULT_PROMPT_TEMPLATE["crop_start"]:]) == ["<|eot_id|>"]
    prompt = extractor.prompt
    assert set(prompt) == {"encoder_hidden_states", "encoder_attention_mask", "pooled_projections"}
    assert prompt["encoder_hidden_states"].shape == (1, TEXT, 16) and prompt["pooled_projections"].shape == (1, 8)
    assert prompt["encoder_attention_mask"].tolist() == [[1.0] + [0.0] * (TEXT - 1)]


# --- (b) noise, timestep and the pipeline's own transformer call ------------------------------------------

def test_noise_is_the_schedulers_own_at_the_pipelines_timestep(extractor: HunyuanVideoExtractor) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import retrieve_timesteps

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(extractor.scheduler.config)
    assert scheduler.config.shift == 7.0
    # The pipeline's default 50-step schedule: each timestep t it feeds is sigma * 1000.
    timesteps, _ = retrieve_timesteps(scheduler, 50, "cpu", sigmas=np.linspace(1.0, 0.0, 51)[:-1])
    x0, eps = torch.randn(1, 4, 3, 4, 6), torch.randn(1, 4, 3, 4, 6)
    for index in (0, 20, 44, 49):
        t = timesteps[index]
        level = NoiseLevel("flow", int(t), float(t) / 1000)
        torch.testing.assert_close(level.apply(x0, eps), scheduler.scale_noise(x0, t[None], eps))

    # Timestep 500: the input sigma 0.125 shifted by 7 is exactly 0.5.
    timesteps, _ = retrieve_timesteps(scheduler, None, "cpu", sigmas=[0.125])
    assert timesteps.tolist() == [500.0]
    frames = _frames()
    _, inputs = recorded_extract(extractor, frames, (1,), 500, clip=4)
    with torch.inference_mode():
        latents = HunyuanVideo.encode_video(extractor, extractor.video_tensor(frames, 4))
    noise = torch.randn(latents.shape, generator=extractor.generator(4, 500))
    torch.testing.assert_close(inputs["hidden_states"], scheduler.scale_noise(latents, timesteps, noise))
    assert inputs["timestep"].dtype == torch.float32 and inputs["timestep"].tolist() == [500.0]
    assert inputs["guidance"].tolist() == [6000.0]


def test_transformer_inputs_and_tokens_match_hunyuan_video_pipeline(extractor: HunyuanVideoExtractor,
                                                                   checkpoint: Path) -> None:
    from diffusers import HunyuanVideoPipeline

    layer = 2  # the first single-stream block
    features, ours = recorded_extract(extractor, _frames(), (layer,), 500, clip=1)
    pipe = HunyuanVideoPipeline.from_pretrained(checkpoint)
    captured = {}

    def record(_module, _inputs, output) -> None:
        captured.setdefault("tokens", output[0].clone())

    handle = pipe.transformer.single_transformer_blocks[0].register_forward_hook(record)
    recorder = Recorder(pipe.transformer)
    try:  # one step at input sigma 0.125 = timestep 500, on our noisy latents
        pipe(prompt="", sigmas=[0.125], num_inference_steps=1, latents=ours["hidden_states"], height=32, width=48,
             num_frames=9, max_sequence_length=TEXT, output_type="latent")
    finally:
        handle.remove()
        recorder.remove()
    (theirs,) = recorder.calls
    for key in ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask", "pooled_projections",
                "guidance"):
        torch.testing.assert_close(ours[key], theirs[key], msg=key)
    expected = captured["tokens"].reshape(features.layers[layer].shape).numpy()
    np.testing.assert_allclose(features.layers[layer], expected, rtol=1e-5, atol=1e-5)


def test_guidance_scale_is_fed_as_the_pipeline_embeds_it(checkpoint: Path, extractor: HunyuanVideoExtractor) -> None:
    weak = make(checkpoint, guidance_scale=1.0)
    base, _ = recorded_extract(extractor, _frames(), (0,), 500)
    other, inputs = recorded_extract(weak, _frames(), (0,), 500)
    assert inputs["guidance"].tolist() == [1000.0] and weak.provenance()["guidance_scale"] == 1.0
    assert np.abs(base.layers[0] - other.layers[0]).max() > 1e-4


# --- (c) seeds -------------------------------------------------------------------------------------------

def test_seeds_make_features_reproducible(checkpoint: Path, extractor: HunyuanVideoExtractor) -> None:
    a = extractor.extract(_frames(), (1,), 500, clip=0).layers[1]
    np.testing.assert_array_equal(a, extractor.extract(_frames(), (1,), 500, clip=0).layers[1])
    assert np.abs(a - extractor.extract(_frames(), (1,), 500, clip=1).layers[1]).max() > 1e-4
    assert np.abs(a - extractor.extract(_frames(seed=1), (1,), 500, clip=0).layers[1]).max() > 1e-4
    other = make(checkpoint, seed=1)
    assert np.abs(a - other.extract(_frames(), (1,), 500, clip=0).layers[1]).max() > 1e-4


# --- (d) early stop --------------------------------------------------------------------------------------

def test_blocks_after_the_deepest_requested_one_do_not_run(extractor: HunyuanVideoExtractor) -> None:
    transformer = extractor.transformer
    blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i)) for i, block in enumerate(blocks)]
    try:
        extractor.extract(_frames(), (0,), 500)
        assert calls == [0]
        calls.clear()
        extractor.extract(_frames(), (1,), 500)  # the last dual-stream block: no single-stream block runs
        assert calls == [0, 1]
        calls.clear()
        extractor.extract(_frames(), (0, 2), 500)
        assert calls == [0, 1, 2]
    finally:
        for handle in handles:
            handle.remove()


# --- (e) token layout ------------------------------------------------------------------------------------

def test_last_block_tokens_through_the_output_head_give_the_model_output(extractor: HunyuanVideoExtractor) -> None:
    """The last (single-stream) block's video tokens laid out as (T', h, w), through the model's norm_out,
    proj_out and unpatchify by that layout, equal the model's output: text tokens left in, a transposed or
    shifted grid would not."""
    transformer, prompt = extractor.transformer, extractor.prompt
    last = extractor.num_layers() - 1
    features, inputs = recorded_extract(extractor, _frames(), (last,), 400)
    assert features.layers[last].shape == (*GRID, 16)
    with torch.inference_mode():
        output = transformer(**inputs)[0]
        tokens = torch.from_numpy(features.layers[last]).reshape(1, -1, 16)
        temb = transformer.time_text_embed(inputs["timestep"], prompt["pooled_projections"], inputs["guidance"])[0]
        head = transformer.proj_out(transformer.norm_out(tokens, temb))
        p, (t, h, w) = transformer.config.patch_size, GRID
        rebuilt = head.reshape(1, t, h, w, -1, 1, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
        rebuilt = rebuilt.flatten(6, 7).flatten(4, 5).flatten(2, 3)
    assert output.shape == (1, 4, 3, 4, 6)
    torch.testing.assert_close(rebuilt, output, rtol=1e-4, atol=1e-5)


# --- (f) attention capture -------------------------------------------------------------------------------

def reference_qkv(attention: torch.nn.Module, kwargs: dict) -> dict[str, torch.Tensor]:
    """q/k/v of the video tokens as HunyuanVideoAttnProcessor2_0 computes them (before rotary embeddings):
    single-stream attention projects [video; text] together, dual-stream attention the video alone."""
    video, text = kwargs["hidden_states"], kwargs["encoder_hidden_states"]
    x = torch.cat([video, text], dim=1) if attention.add_q_proj is None else video
    heads = attention.heads
    q = attention.norm_q(attention.to_q(x).unflatten(2, (heads, -1))).flatten(2)
    k = attention.norm_k(attention.to_k(x).unflatten(2, (heads, -1))).flatten(2)
    v = attention.to_v(x)
    count = video.shape[1]
    return {"attn_q": q[0, :count], "attn_k": k[0, :count], "attn_v": v[0, :count]}


def test_attention_captures_are_the_attention_modules_own(checkpoint: Path) -> None:
    captures = ("output", "attn_q", "attn_k", "attn_v", "attn_k.h1")
    extractor = make(checkpoint, captures=captures)
    transformer, spec = extractor.transformer, extractor.family_spec
    torch.manual_seed(0)
    noisy = torch.randn(1, 4, 3, 4, 6)
    level = noise_level(extractor.scheduler, 500)
    layers = {1: transformer.transformer_blocks[1].attn, 3: transformer.single_transformer_blocks[1].attn}
    recorders = {layer: Recorder(attention) for layer, attention in layers.items()}
    try:
        with torch.inference_mode():
            spec.forward(extractor, transformer, noisy, level, {})
            captured = extractor._forward(noisy, level, tuple((layer, c) for layer in layers for c in captures))
    finally:
        for recorder in recorders.values():
            recorder.remove()
    for layer, attention in layers.items():
        with torch.inference_mode():
            expected = reference_qkv(attention, recorders[layer].calls[0])
        assert recorders[layer].calls[0]["encoder_hidden_states"].shape[1] == TEXT
        for kind, value in expected.items():
            assert captured[layer, kind].shape == (18, 16)
            torch.testing.assert_close(captured[layer, kind], value, rtol=1e-5, atol=1e-6, msg=f"{layer} {kind}")
        torch.testing.assert_close(captured[layer, "attn_k.h1"], expected["attn_k"][:, 8:])
    features = extractor.extract(_frames(), (3,), 500)
    assert features.arrays()[3, "attn_v"].shape == (*GRID, 16)


# --- (g) bad input ---------------------------------------------------------------------------------------

def test_bad_input_gives_clear_errors(checkpoint: Path, extractor: HunyuanVideoExtractor) -> None:
    entry = {"family": "hunyuan-video", "checkpoint": str(checkpoint), "timesteps": [500], "options": OPTIONS}
    with pytest.raises(LayerSpecError, match=r"layer 4 is out of range; valid layers are 0\.\.3"):
        resolve_model("hy", {**entry, "layers": [4]})
    with pytest.raises(OptionError, match=r"timestep 1001 is outside FlowMatchEulerDiscreteScheduler's range "
                                          r"0\.\.1000"):
        resolve_model("hy", {**entry, "layers": [0], "timesteps": [1001]})
    with pytest.raises(ValueError, match="timestep -1"):
        noise_level(extractor.scheduler, -1)
    short = extractor.extract(_frames(count=6), (0,), 500, clip=7)  # fed whole: its longest 4k+1 prefix
    assert short.frame_index.tolist() == extractor.expected_frame_index(6).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"model 'hunyuan': clip 2 has 0 frames, too few for this VAE"):
        extractor.input_frames(0, clip=2)


@pytest.mark.parametrize(("options", "message"), [
    ({"frames": 8}, r"model 'hy': frames=8; this VAE takes 4k\+1 frames"),
    ({"resolution": [40, 48]}, r"model 'hy': resolution 40x48 must be a multiple of 16"),
    ({"guidance_scale": "high"}, r"model 'hy': option guidance_scale='high' must be a number"),
    ({"max_text_tokens": 0}, r"model 'hy': option max_text_tokens=0 must be a positive integer"),
    ({"bogus": 1}, r"unknown option\(s\) \['bogus'\]"),
])
def test_bad_options(checkpoint: Path, options: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        HunyuanVideoExtractor("hy", {**OPTIONS, **options}, checkpoint=str(checkpoint))


def test_missing_or_wrong_checkpoints_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(checkpoint, tmp_path / "broken"))
    shutil.rmtree(broken / "text_encoder_2")
    with pytest.raises(OptionError, match=r"model 'hy': .*lacks the folder\(s\) \['text_encoder_2/'\]"):
        HunyuanVideoExtractor("hy", OPTIONS, checkpoint=str(broken))
    with pytest.raises(OptionError, match=r"checkpoint '/no/such/model' does not exist"):
        HunyuanVideoExtractor("hy", OPTIONS, checkpoint="/no/such/model")
    with pytest.raises(OptionError, match="needs 'checkpoint'"):
        HunyuanVideoExtractor("hy", OPTIONS)

    def edited(name: str, component: str, **changes) -> str:
        copy = Path(shutil.copytree(checkpoint, tmp_path / name))
        path = copy / component / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
        return str(copy)

    with pytest.raises(OptionError, match=r"image_condition_type='latent_concat' \(HunyuanVideo-I2V\) is not "
                                          r"supported"):
        HunyuanVideoExtractor("hy", OPTIONS, checkpoint=edited("i2v", "transformer", in_channels=9,
                                                                image_condition_type="latent_concat"))
    with pytest.raises(OptionError, match=r"the transformer is a WanTransformer3DModel; this family runs Hunyuan"):
        HunyuanVideoExtractor("hy", OPTIONS, checkpoint=edited("wan", "transformer",
                                                                _class_name="WanTransformer3DModel"))
    with pytest.raises(OptionError, match=r"the VAE compresses time x8; this family expects x4"):
        HunyuanVideoExtractor("hy", OPTIONS, checkpoint=edited("vae8", "vae", temporal_compression_ratio=8))


def test_checkpoint_of_another_family_is_refused(tmp_path: Path) -> None:
    wan = build_tiny_model("tiny-wan-t2v", tmp_path / "tiny-wan-t2v")
    with pytest.raises(OptionError, match=r"model 'hy': .*lacks component\(s\) \['tokenizer_2'\]"):
        HunyuanVideoExtractor("hy", OPTIONS, checkpoint=str(wan))


# --- (h) shapes from configs alone -----------------------------------------------------------------------

def test_feature_shape_before_loading_is_the_stored_shape(checkpoint: Path, extractor: HunyuanVideoExtractor) -> None:
    planned = HunyuanVideoExtractor("hy", OPTIONS, checkpoint=str(checkpoint))  # not loaded: configs only
    for size, expected in (((9, 40, 40), (3, 2, 3, 16)), ((6, 24, 40), (2, 2, 3, 16))):
        shape = planned.feature_shape(*size)
        assert shape == expected
        features = extractor.extract(_frames(count=size[0], size=size[1:]), (0, 3), 500)
        assert all(array.shape == shape for array in features.layers.values())
        np.testing.assert_array_equal(features.frame_index, planned.expected_frame_index(size[0]))


# --- preset ----------------------------------------------------------------------------------------------

def test_preset_and_defaults(checkpoint: Path) -> None:
    preset = HunyuanVideo.presets["HunyuanVideo"]
    assert (preset.hub_id, preset.blocks, preset.channels) == ("hunyuanvideo-community/HunyuanVideo", 60, 3072)
    assert preset.layers == (36, 40) and preset.timestep == 500
    defaults = HunyuanVideoExtractor.default_options
    assert (defaults["frames"], defaults["resolution"], defaults["max_text_tokens"]) == (61, [544, 960], 256)
    assert defaults["guidance_scale"] == 6.0
    entry = {"preset": "HunyuanVideo", "checkpoint": str(checkpoint), "layers": [0], "options": OPTIONS}
    with pytest.raises(ValueError, match=r"has 4 blocks of 16 channels, but preset 'HunyuanVideo' is 60 blocks "
                                         r"of 3072"):
        resolve_model("hy", entry)
