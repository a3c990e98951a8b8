"""Aether on a tiny random-init pipeline (Aether's channel layout) saved and loaded with ``from_pretrained``.

Aether's own pipeline cannot be imported here (it is not installed), so the strong checks restate its lines
(OpenRobotLab/Aether ``aether/pipelines/aetherv1_pipeline_cogvideox.py``, quoted in the test docstrings) and
compare with what the extractor feeds the transformer, and use diffusers' own CogVideoX pieces where Aether
reuses them (prompt encoding, rotary embeddings at fps 12, the output head).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors import resolve_model
from extractors.aether import AETHER_TINY, Aether, AetherExtractor, channel_layout
from extractors.base import OptionError
from extractors.diffusion import noise_level
from extractors.layers import LayerSpecError
from tests.recording import Recorder
from tests.recording import recorded_extract as recorded

OPTIONS = {"frames": 17, "resolution": [64, 64], "random_init": True, "max_text_tokens": 8,
           "parts_checkpoint": None}  # the tiny pipeline directory holds the parts too


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from extractors.tiny_models import build_tiny_model

    return build_tiny_model("tiny-aether", tmp_path_factory.mktemp("models") / "tiny-aether")


def make(checkpoint: Path | str, seed: int = 0, **options) -> AetherExtractor:
    extractor = AetherExtractor("aether", {**OPTIONS, **options}, seed=seed, checkpoint=str(checkpoint))
    extractor.load()
    return extractor


@pytest.fixture(scope="module")
def extractor(tiny: Path) -> AetherExtractor:
    return make(tiny)


def video(frames: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def at250(extractor):
    """Layers 1 and 2 of clip 3 at timestep 250 with the transformer's inputs (shared by several tests)."""
    return recorded(extractor, video(), (1, 2), 250, clip=3)


def full_forward(extractor, inputs: dict) -> torch.Tensor:
    """The transformer's whole forward on recorded inputs (no early stop); returns its output."""
    with torch.inference_mode():
        return extractor.transformer(**inputs)[0]


# --- (a) loading and shapes ----------------------------------------------------------------------------

def test_loads_through_from_pretrained_and_extracts(extractor, at250):
    assert type(extractor.transformer).__name__ == "CogVideoXTransformer3DModel"
    assert type(extractor.vae).__name__ == "AutoencoderKLCogVideoX"
    assert type(extractor.scheduler).__name__ == "CogVideoXDPMScheduler"  # as Aether's scripts/demo.py loads it
    assert extractor.num_layers() == 3 and extractor.channels() == 32 and extractor.random_init
    features, _ = at250
    for layer in (1, 2):
        array = features.layers[layer]
        assert array.shape == (5, 4, 4, 32) and array.dtype == np.float32 and np.isfinite(array).all()
    assert features.frame_index.tolist() == [0, 1, 5, 9, 13]  # 17 frames -> 5 latent frames (causal VAE)
    provenance = extractor.provenance()
    assert provenance["aether_task"] == "reconstruction"
    assert provenance["parts_checkpoint"] == extractor.checkpoint.location  # parts_checkpoint: null
    assert "clip_latents" not in extractor.conditioning  # handed from encode_video to clip_conditioning


def test_transformer_only_checkpoint_takes_the_rest_from_parts(tiny, at250, tmp_path):
    """AetherWorldModel/AetherV1's layout: transformer/ and no model_index.json; parts from another checkpoint."""
    aether = tmp_path / "AetherV1"
    shutil.copytree(tiny / "transformer", aether / "transformer")
    split = make(aether, parts_checkpoint=str(tiny))
    assert split.checkpoint.transformer_only and split.checkpoint.components == {
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"]}
    assert split.provenance()["parts_checkpoint"] == str(tiny)
    features, _ = at250
    np.testing.assert_array_equal(split.extract(video(), (1,), 250, clip=3).layers[1], features.layers[1])
    with pytest.raises(OptionError, match=r"holds only transformer/ .*parts_checkpoint \(e\.g\. "
                                          r"'THUDM/CogVideoX-5b-I2V'\)"):
        AetherExtractor("aether", OPTIONS, checkpoint=str(aether))  # parts_checkpoint: null = its own


# --- (b) the input the transformer gets: Aether's layout, the scheduler's noise ------------------------

def test_transformer_input_is_aethers_reconstruction_layout(extractor, at250):
    """Restates AetherV1PipelineCogVideoX for task "reconstruction" (video given, no raymap):

    prepare_latents:  video_latents = vae_scaling_factor_image * retrieve_latents(vae.encode(video))  [B,F,C,H,W]
                      condition_latents = video_latents
                      camera_conditions = torch.zeros(B, num_frames, 24, height // 8, width // 8)
                      condition_latents = torch.cat([condition_latents, camera_conditions], dim=2)
    __call__:         latent_model_input = scheduler.scale_model_input(latents, t)
                      latent_model_input = torch.cat([latent_model_input, latent_condition], dim=2)
                      transformer(hidden_states=..., encoder_hidden_states=empty_prompt_embeds, timestep=t,
                                  ofs=None, image_rotary_emb=_prepare_rotary_positional_embeddings(...))
    with the 56 noisy target channels [color, disparity, raymap] = add_noise([clip latents, 0, 0], eps, t)
    (posterior mean, not a sample: the recipe's one deliberate difference)."""
    from diffusers import CogVideoXImageToVideoPipeline

    _, inputs = at250
    vae, scheduler = extractor.vae, extractor.scheduler
    with torch.inference_mode():
        clip = extractor.video_tensor(video(), 3)
        video_latents = vae.config.scaling_factor * vae.encode(clip).latent_dist.mode().permute(0, 2, 1, 3, 4)
        batch, frames, channels, height, width = video_latents.shape
        camera_conditions = torch.zeros(batch, frames, 24, height, width)
        condition_latents = torch.cat([video_latents, camera_conditions], dim=2)
        x0 = torch.cat([video_latents, torch.zeros(batch, frames, 16 + 24, height, width)], dim=2)
        eps = torch.randn(x0.shape, generator=extractor.generator(3, 250))
        latents = scheduler.add_noise(x0, eps, torch.tensor([250]))
        expected = torch.cat([scheduler.scale_model_input(latents, 250), condition_latents], dim=2)
    assert (channels, height, width) == (16, 8, 8) and expected.shape == (1, 5, 96, 8, 8)
    torch.testing.assert_close(inputs["hidden_states"], expected, rtol=1e-5, atol=1e-5)
    assert inputs["timestep"].dtype == torch.long and inputs["timestep"].tolist() == [250]
    assert inputs.get("ofs") is None and extractor.transformer.config.ofs_embed_dim is None

    pipe = CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler,
                                         transformer=extractor.transformer)
    for ours, theirs in zip(inputs["image_rotary_emb"], pipe._prepare_rotary_positional_embeddings(64, 64, 5, "cpu"),
                            strict=True):
        torch.testing.assert_close(ours, theirs)  # Aether's equals diffusers' at its base fps 12
    # AetherV1PipelineCogVideoX.__init__: self.encode_prompt(prompt="", negative_prompt=None,
    # do_classifier_free_guidance=False, num_videos_per_prompt=1, prompt_embeds=None) (226 tokens; the tiny 8)
    from transformers import AutoTokenizer, T5EncoderModel

    location = extractor.checkpoint.location
    pipe.tokenizer = AutoTokenizer.from_pretrained(location, subfolder="tokenizer")
    pipe.text_encoder = T5EncoderModel.from_pretrained(location, subfolder="text_encoder")
    with torch.inference_mode():
        empty, _ = pipe.encode_prompt(prompt="", negative_prompt=None, do_classifier_free_guidance=False,
                                      num_videos_per_prompt=1, prompt_embeds=None, max_sequence_length=8)
    torch.testing.assert_close(inputs["encoder_hidden_states"], empty)
    level = noise_level(extractor.scheduler, 250)
    assert extractor.noise_attributes(250)["alpha_bar"] == level.value == float(scheduler.alphas_cumprod[250])


def test_channel_layout_is_aethers():
    """56 target channels sliced as __call__ slices the result ([:16] rgb, [16:32] disparity, [32:] camera),
    then the 40 condition channels; the tiny model has the real layout."""
    layout = channel_layout(16, 4)
    assert [(name, s.start, s.stop) for name, s in layout.items()] == [
        ("color", 0, 16), ("disparity", 16, 32), ("raymap", 32, 56), ("observation", 56, 72), ("camera", 72, 96)]
    config = AETHER_TINY["tiny-aether"]["transformer"][1]
    assert (config["in_channels"], config["out_channels"]) == (96, 56)
    assert AETHER_TINY["tiny-aether"]["vae"][1]["latent_channels"] == 16


def test_scheduler_classes_share_the_noise_schedule(extractor):
    from diffusers import CogVideoXDDIMScheduler

    ddim = CogVideoXDDIMScheduler.from_config(extractor.scheduler.config)
    torch.testing.assert_close(ddim.alphas_cumprod, extractor.scheduler.alphas_cumprod)


def test_tokens_are_the_blocks_own_output_on_those_inputs(extractor, at250):
    features, inputs = at250
    outputs = {}

    def record(_module, _inputs, output) -> None:
        outputs[1] = output[0].clone()

    handle = extractor.transformer.transformer_blocks[1].register_forward_hook(record)
    try:
        full_forward(extractor, inputs)
    finally:
        handle.remove()
    np.testing.assert_allclose(features.layers[1], outputs[1].reshape(5, 4, 4, 32).numpy(), rtol=1e-5, atol=1e-5)


def test_fps_scales_the_rotary_time_positions_as_aether_does(extractor, at250):
    """Aether's get_3d_rotary_pos_embed: grid_t = linspace(0, T * (T - 1) / T, T) * fps_factor,
    fps_factor = _base_fps / fps; freqs_t = get_1d_rotary_pos_embed(embed_dim // 4, grid_t, use_real=True),
    concatenated before the height and width frequencies."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    _, inputs = at250
    noisy, condition = inputs["hidden_states"][:, :, :56], {"condition": inputs["hidden_states"][:, :, 56:]}
    level = noise_level(extractor.scheduler, 250)
    saved = extractor.conditioning["rotary"]
    extractor.options["fps"], extractor.conditioning["rotary"] = 8, {}
    try:
        with torch.inference_mode():
            cos, sin = Aether.rotary_embeddings(extractor, (1, 5, 16, 8, 8))
            moved = extractor._forward(noisy, level, ((0, "output"),), condition)[0, "output"]
    finally:
        extractor.options["fps"], extractor.conditioning["rotary"] = 12, saved
    grid_t = torch.linspace(0, 5 * 4 / 5, 5) * (12 / 8)
    t_cos, t_sin = get_1d_rotary_pos_embed(16 // 4, grid_t, use_real=True)
    base_cos, base_sin = inputs["image_rotary_emb"]
    for table, base, temporal in ((cos, base_cos, t_cos), (sin, base_sin, t_sin)):
        table, base = table.view(5, 16, 16), base.view(5, 16, 16)
        torch.testing.assert_close(table[..., :4], temporal[:, None].expand(5, 16, 4))
        torch.testing.assert_close(table[..., 4:], base[..., 4:])  # height and width columns unchanged
    with torch.inference_mode():
        same = extractor._forward(noisy, level, ((0, "output"),), condition)[0, "output"]
    assert (moved - same).abs().max() > 1e-4


# --- (c) seeds and clips -------------------------------------------------------------------------------

def test_same_seed_same_features_other_seed_or_clip_different(tiny, extractor, at250):
    features, _ = at250
    first = features.layers[1]
    again = make(tiny, seed=0).extract(video(), (1,), 250, clip=3).layers[1]
    other_seed = make(tiny, seed=1).extract(video(), (1,), 250, clip=3).layers[1]
    other_index = extractor.extract(video(), (1,), 250, clip=4).layers[1]
    other_clip = extractor.extract(video(seed=9), (1,), 250, clip=3).layers[1]
    np.testing.assert_array_equal(first, again)
    for other in (other_seed, other_index, other_clip):
        assert np.abs(first - other).max() > 1e-3


# --- (d) early stop ------------------------------------------------------------------------------------

def test_blocks_after_the_deepest_requested_one_never_run(extractor):
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, block in enumerate(extractor.transformer.transformer_blocks)]
    try:
        extractor.extract(video(), (1, 0), 250)
        assert calls == [0, 1]  # block 2 never ran
    finally:
        for handle in handles:
            handle.remove()


# --- (e) token layout ----------------------------------------------------------------------------------

def test_last_block_tokens_through_the_output_head_give_the_model_output(extractor, at250):
    """norm_final, norm_out (with the time embedding), proj_out and the unpatchify of
    CogVideoXTransformer3DModel.forward, applied to the stored (T', h, w, C) grid, rebuild its 56-channel output."""
    features, inputs = at250
    transformer = extractor.transformer
    tokens = torch.from_numpy(features.layers[2]).reshape(1, -1, 32)
    with torch.inference_mode():
        emb = transformer.time_embedding(transformer.time_proj(torch.tensor([250])).to(tokens.dtype))
        hidden = transformer.proj_out(transformer.norm_out(transformer.norm_final(tokens), temb=emb))
        output = hidden.reshape(1, 5, 4, 4, -1, 2, 2).permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        full = full_forward(extractor, inputs)
    assert full.shape == (1, 5, 56, 8, 8)
    torch.testing.assert_close(output, full, rtol=1e-4, atol=1e-5)


# --- (f) attention capture -----------------------------------------------------------------------------

def test_attention_captures_are_the_blocks_own_projections(tiny, at250):
    """q and k after the model's per-head LayerNorm (before rotary embeddings), v after its projection, for
    the video tokens of CogVideoXAttnProcessor2_0's joint [text; video] sequence."""
    attentive = AetherExtractor("aether", OPTIONS, seed=0, checkpoint=str(tiny),
                                captures=("output", "attn_q", "attn_k", "attn_v"))
    attentive.load()
    features = attentive.extract(video(), (1,), 250, clip=3)
    _, inputs = at250
    attention = attentive.transformer.transformer_blocks[1].attn1
    recorder = Recorder(attention)
    try:
        full_forward(attentive, inputs)
    finally:
        recorder.remove()
    video_tokens, text = recorder.calls[0]["hidden_states"], recorder.calls[0]["encoder_hidden_states"]
    joint = torch.cat([text, video_tokens], dim=1)
    heads, length = attention.heads, text.shape[1]
    with torch.inference_mode():
        def per_head(x, norm):
            return norm(x.view(1, -1, heads, 32 // heads).transpose(1, 2))[:, :, length:].transpose(1, 2).flatten(2)

        expected = {"attn_q": per_head(attention.to_q(joint), attention.norm_q),
                    "attn_k": per_head(attention.to_k(joint), attention.norm_k),
                    "attn_v": attention.to_v(joint)[:, length:]}
    np.testing.assert_allclose(features.layers[1], at250[0].layers[1], rtol=1e-6, atol=1e-6)
    for kind, reference in expected.items():
        np.testing.assert_allclose(features.captures[1, kind], reference.reshape(5, 4, 4, 32).numpy(),
                                   rtol=1e-5, atol=1e-5)


# --- (g) bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"frames": 21}, r"model 'aether': frames=21; Aether's pipeline takes \[17, 25, 33, 41\] frames"),
    ({"resolution": [64, 40]}, r"model 'aether': resolution 64x40 must be a multiple of 16"),
    ({"resolution": [32, 64]}, r"learned positional embeddings fix the resolution to 64x64; got resolution=\[32, 64\]"),
    ({"max_text_tokens": 16}, r"max_text_tokens=16, .*max_text_seq_length=8"),
    ({"fps": 9}, r"model 'aether': fps=9; Aether's pipeline takes \[8, 10, 12, 15, 24\]"),
    ({"parts_checkpoint": "/no/such/parts"}, r"parts_checkpoint: checkpoint '/no/such/parts' does not exist"),
    ({"parts_checkpoint": 5}, r"option parts_checkpoint=5 must be a checkpoint location"),
    ({"bogus": 1}, r"unknown option\(s\) \['bogus'\]"),
])
def test_bad_options_name_the_model_and_value(tiny, options, message):
    with pytest.raises(OptionError, match=message):
        AetherExtractor("aether", {**OPTIONS, **options}, checkpoint=str(tiny))


def test_layer_and_timestep_out_of_range(tiny):
    entry = {"family": "aether", "checkpoint": str(tiny), "timesteps": [250], "options": OPTIONS}
    assert resolve_model("a", {**entry, "layers": [-1]}).layers == (2,)
    with pytest.raises(LayerSpecError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_model("a", {**entry, "layers": [3]})
    with pytest.raises(OptionError, match=r"model 'a': timestep 1000 is outside CogVideoXDDIMScheduler's range "
                                          r"0\.\.999"):
        resolve_model("a", {**entry, "layers": [0], "timesteps": [1000]})


def test_short_clips_take_the_longest_count_aethers_pipeline_takes(extractor):
    """(The extraction of such a clip is in test_feature_shape_before_loading_is_the_stored_shape.)"""
    assert [extractor.input_frames(n) for n in (17, 24, 41)] == [17, 17, 17]
    longer = AetherExtractor("aether", {**OPTIONS, "frames": 41}, checkpoint=str(extractor.checkpoint.location))
    assert [longer.input_frames(n) for n in (17, 24, 25, 32, 40, 41, 60)] == [17, 17, 25, 25, 33, 41, 41]
    assert extractor.expected_frame_index(24).tolist() == [0, 1, 5, 9, 13]
    with pytest.raises(ValueError, match=r"clip 5 has 16 frames, too few"):
        extractor.input_frames(16, clip=5)


def test_missing_component_names_the_checkpoint_and_folder(tiny, tmp_path):
    parts = Path(shutil.copytree(tiny, tmp_path / "parts"))
    shutil.rmtree(parts / "vae")
    with pytest.raises(OptionError, match=r"parts_checkpoint: checkpoint '.*parts' lacks the folder\(s\) \['vae/'\]"):
        AetherExtractor("aether", {**OPTIONS, "parts_checkpoint": str(parts)}, checkpoint=str(tiny))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OptionError, match=r"'.*empty' lacks transformer/config\.json; nor has it model_index\.json"):
        AetherExtractor("aether", OPTIONS, checkpoint=str(empty))
    with pytest.raises(OptionError, match="needs 'checkpoint'"):
        AetherExtractor("aether", OPTIONS)


def write_configs(root: Path, files: dict) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(json.dumps(content))
    return root


def test_checkpoint_of_the_wrong_kind_is_refused(tiny, tmp_path):
    from extractors.tiny_models import expected_files

    i2v = write_configs(tmp_path / "i2v", expected_files("tiny-cogvideox-i2v"))  # configs are all it reads
    for component in ("tokenizer", "text_encoder", "scheduler"):
        (i2v / component).mkdir(exist_ok=True)
    with pytest.raises(OptionError, match=r"takes 8 input and makes 4 output channels; Aether's layout for 4 VAE "
                                          r"latent channels is 60 in .* and 32 out \(is it a cogvideox-i2v"):
        AetherExtractor("aether", OPTIONS, checkpoint=str(i2v))
    wan = write_configs(tmp_path / "wan", {"transformer/config.json": {"_class_name": "WanTransformer3DModel"}})
    with pytest.raises(OptionError, match=r"the transformer is a WanTransformer3DModel; Aether's is a "
                                          r"CogVideoXTransformer3DModel"):
        AetherExtractor("aether", {**OPTIONS, "parts_checkpoint": str(tiny)}, checkpoint=str(wan))


# --- (h) shapes before loading -------------------------------------------------------------------------

def test_feature_shape_before_loading_is_the_stored_shape(tiny):
    planned = AetherExtractor("aether", {**OPTIONS, "frames": 25}, checkpoint=str(tiny))
    sizes = [(25, 40, 40), (20, 24, 40)]  # a full clip and a shorter one (fed its first 17 frames)
    predicted = [planned.feature_shape(*size) for size in sizes]
    assert predicted == [(7, 4, 4, 32), (5, 4, 4, 32)]
    planned.load()
    rng = np.random.default_rng(0)
    for (frames, height, width), shape in zip(sizes, predicted, strict=True):
        clip = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
        features = planned.extract(clip, (2,), 250)
        assert features.layers[2].shape == shape
        np.testing.assert_array_equal(features.frame_index, planned.expected_frame_index(frames))


def test_planned_tiny_checkpoint_counts_layers_without_weights(tmp_path):
    from extractors.checkpoints import CheckpointError, expect_checkpoint
    from extractors.tiny_models import expected_files

    location = str(tmp_path / "later" / "tiny-aether")
    expect_checkpoint(location, expected_files("tiny-aether"))
    planned = AetherExtractor("planned", OPTIONS, checkpoint=location)
    assert planned.num_layers() == 3 and planned.feature_shape(17, 64, 64) == (5, 4, 4, 32)
    with pytest.raises(CheckpointError, match="not written yet"):
        planned.checkpoint.load("transformer")


def test_real_size_configs_give_the_presets_shapes(tmp_path):
    """AetherV1 (transformer/ only: CogVideoX-5b-I2V's transformer with Aether's 96 in / 56 out channels) with
    CogVideoX-5b-I2V's parts, from config JSONs alone: 42 blocks of 3072, 11 x 30 x 45 tokens for 41 frames."""
    aether = write_configs(tmp_path / "AetherV1", {"transformer/config.json": {
        "_class_name": "CogVideoXTransformer3DModel", "attention_head_dim": 64, "num_attention_heads": 48,
        "num_layers": 42, "in_channels": 96, "out_channels": 56, "patch_size": 2, "patch_size_t": None,
        "max_text_seq_length": 226, "sample_frames": 49, "sample_height": 60, "sample_width": 90,
        "temporal_compression_ratio": 4, "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": True, "ofs_embed_dim": None}})
    parts = write_configs(tmp_path / "CogVideoX-5b-I2V", {
        "model_index.json": {"_class_name": "CogVideoXImageToVideoPipeline",
                             "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
                             "text_encoder": ["transformers", "T5EncoderModel"],
                             "tokenizer": ["transformers", "T5Tokenizer"],
                             "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
                             "vae": ["diffusers", "AutoencoderKLCogVideoX"]},
        "vae/config.json": {"_class_name": "AutoencoderKLCogVideoX", "latent_channels": 16,
                            "block_out_channels": [128, 256, 256, 512], "temporal_compression_ratio": 4,
                            "scaling_factor": 0.7},
        "text_encoder/config.json": {"architectures": ["T5EncoderModel"], "d_model": 4096},
        "scheduler/scheduler_config.json": {"_class_name": "CogVideoXDDIMScheduler", "num_train_timesteps": 1000}})
    (parts / "tokenizer").mkdir()
    (parts / "transformer").mkdir()
    entry = {"preset": "AetherV1", "checkpoint": str(aether), "layers": [18, 20],
             "options": {"parts_checkpoint": str(parts)}}
    model = resolve_model("aether", entry)
    assert model.layers == (18, 20) and model.timesteps == (250,)
    extractor = model.build(seed=0)
    assert extractor.num_layers() == 42 and extractor.channels() == 3072
    assert extractor.feature_shape(41, 480, 720) == (11, 30, 45, 3072)
    assert extractor.feature_shape(49, 1080, 1920) == (11, 30, 45, 3072)
    assert extractor.feature_shape(30, 480, 720) == (7, 30, 45, 3072)  # fed its first 25 frames
    with pytest.raises(OptionError, match=r"frames=49; Aether's pipeline takes"):
        resolve_model("aether", {**entry, "options": {**entry["options"], "frames": 49}})


def test_preset_and_defaults_are_aethers_pipeline_defaults(extractor):
    """Timestep 250 is the paper's "index 749": scheduler.timesteps[749] of the 1000-step trailing schedule
    (VidFM3D's features/aether/aether_feature.py: t_input = self.scheduler.timesteps[t_idx])."""
    scheduler = type(extractor.scheduler).from_config(extractor.scheduler.config)
    scheduler.set_timesteps(1000)
    assert int(scheduler.timesteps[749]) == 250
    preset = Aether.presets["AetherV1"]
    assert (preset.family, preset.hub_id, preset.blocks, preset.channels) == ("aether", "AetherWorldModel/AetherV1",
                                                                              42, 3072)
    assert preset.layers == (18, 20) and preset.timestep == 250
    assert preset.options == {"frames": 41, "resolution": [480, 720], "max_text_tokens": 226, "fps": 12,
                              "parts_checkpoint": "THUDM/CogVideoX-5b-I2V"}
    defaults = AetherExtractor.default_options
    assert {key: defaults[key] for key in preset.options} == preset.options
    assert AetherExtractor.family == "aether" and "tiny-aether" in AetherExtractor.tiny_models
