"""CogVideoX (diffusers) as a feature source: the family's pieces of the recipe in :mod:`extractors.diffusion`.

Two families share one spec: ``cogvideox-t2v`` serves CogVideoX-2b (3-D sin-cos positional embeddings added
by the patch embedding) and CogVideoX-5b (rotary embeddings the caller computes, exactly as the pipeline's
``_prepare_rotary_positional_embeddings`` does); the transformer config decides which. ``cogvideox-i2v``
serves CogVideoX-5b-I2V: the transformer takes the noisy clip latents concatenated on the channel axis with
the condition latents of the clip's first frame, built as ``CogVideoXImageToVideoPipeline.prepare_latents``
builds them (except that the posterior mean is taken instead of a sample, as everywhere in the recipe).

Latents are (B, F, C, H, W) as the pipelines hold them; blocks return ``(video_tokens, text_tokens)`` and the
video tokens are kept. CogVideoX 1.5 checkpoints (``patch_size_t`` set: tokens span two latent frames and the
pipelines pad the latent frame count) are refused with a clear error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.diffusion import DEFAULT_OPTIONS, DiffusionVideoExtractor, NoiseLevel, VideoFamily
from extractors.presets import Preset

# --- tiny random-init models (built by extractors.tiny_models.build_tiny_model) ------------------------

_COGVIDEOX_VAE = ("AutoencoderKLCogVideoX", {
    "block_out_channels": [8, 8, 8, 8], "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 2,
    "temporal_compression_ratio": 4,
    "down_block_types": ["CogVideoXDownBlock3D"] * 4, "up_block_types": ["CogVideoXUpBlock3D"] * 4})
# CogVideoX-2b's scheduler_config.json.
_COGVIDEOX_SCHEDULER = ("CogVideoXDDIMScheduler", {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "clip_sample_range": 1.0, "sample_max_value": 1.0, "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True, "set_alpha_to_one": True, "snr_shift_scale": 3.0, "steps_offset": 0,
    "timestep_spacing": "trailing"})
_T5 = ("T5EncoderModel", {
    "vocab_size": 32, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 1, "num_heads": 2,
    "relative_attention_num_buckets": 8})
_COGVIDEOX_TRANSFORMER = {
    "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 4, "time_embed_dim": 8,
    "text_embed_dim": 16, "num_layers": 3, "sample_width": 8, "sample_height": 8, "sample_frames": 9,
    "patch_size": 2, "temporal_compression_ratio": 4, "max_text_seq_length": 8}

COGVIDEOX_TINY: dict[str, dict[str, Any]] = {
    # Like CogVideoX-2b: 3-D sin-cos positional embeddings (heads x head_dim must be a multiple of 16).
    "tiny-cogvideox-t2v": {
        "pipeline": "CogVideoXPipeline",
        "transformer": ("CogVideoXTransformer3DModel", {
            **_COGVIDEOX_TRANSFORMER, "use_rotary_positional_embeddings": False}),
        "vae": _COGVIDEOX_VAE, "scheduler": _COGVIDEOX_SCHEDULER, "text_encoder": _T5,
    },
    # Like CogVideoX-5b: rotary embeddings computed by the caller.
    "tiny-cogvideox-rope": {
        "pipeline": "CogVideoXPipeline",
        "transformer": ("CogVideoXTransformer3DModel", {
            **_COGVIDEOX_TRANSFORMER, "attention_head_dim": 16, "use_rotary_positional_embeddings": True}),
        "vae": _COGVIDEOX_VAE, "scheduler": _COGVIDEOX_SCHEDULER, "text_encoder": _T5,
    },
    # Like CogVideoX-5b-I2V: rotary + learned positional embeddings (which fix the input to the sample size:
    # 17 frames at 64x64 here, as 49 frames at 480x720 for the real one), 2x latent channels in.
    "tiny-cogvideox-i2v": {
        "pipeline": "CogVideoXImageToVideoPipeline",
        "transformer": ("CogVideoXTransformer3DModel", {
            **_COGVIDEOX_TRANSFORMER, "attention_head_dim": 16, "in_channels": 8, "sample_frames": 17,
            "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": True}),
        "vae": _COGVIDEOX_VAE, "scheduler": _COGVIDEOX_SCHEDULER, "text_encoder": _T5,
    },
}


COGVIDEOX_OPTIONS = {**DEFAULT_OPTIONS, "frames": 49, "resolution": [480, 720],
                     "max_text_tokens": 226}  # the pipelines' max_sequence_length and the 2B's table size


def cogvideox_preset(hub_id: str, family: str, blocks: int, channels: int) -> Preset:
    """The paper's CogVideoX probing: layers 18 and 20 at timestep 250 (its "index 749" of the DDIM
    schedule), 49 frames at 480x720."""
    return Preset(family, hub_id, blocks, channels, (18, 20), timestep=250,
                  options={"frames": 49, "resolution": [480, 720], "max_text_tokens": 226})


# --- families ------------------------------------------------------------------------------------------

class CogVideoXT2V(VideoFamily):
    """CogVideoX text-to-video: T5 text encoder, causal 3-D VAE (x4 time, x8 space), patch 2 (1 in time)."""

    family: ClassVar[str] = "cogvideox-t2v"
    description: ClassVar[str] = "CogVideoX text-to-video (CogVideoXTransformer3DModel; 2b sin-cos, 5b rotary)"
    pipeline: ClassVar[str] = "CogVideoXPipeline"
    block_lists: ClassVar[tuple[str, ...]] = ("transformer_blocks",)
    spatial_multiple: ClassVar[int] = 16  # VAE x8 then patch x2
    default_options = COGVIDEOX_OPTIONS
    presets = {
        "CogVideoX-2b": cogvideox_preset("THUDM/CogVideoX-2b", "cogvideox-t2v", 30, 1920),
        "CogVideoX-5b": cogvideox_preset("THUDM/CogVideoX-5b", "cogvideox-t2v", 42, 3072),
    }
    tiny_models = {name: COGVIDEOX_TINY[name] for name in ("tiny-cogvideox-t2v", "tiny-cogvideox-rope")}
    latent_channel_factor: ClassVar[int] = 1  # transformer in_channels = factor x VAE latent channels
    other_family: ClassVar[str] = "cogvideox-i2v"  # named in the error for a checkpoint of the other kind

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """What the configs must say for this family to run as the pipeline does (no weights loaded)."""
        super().check_checkpoint(extractor)
        options, fail = extractor.options, extractor.refuse_checkpoint
        transformer = extractor.component_config("transformer")
        vae = extractor.component_config("vae")
        extractor.component_config("text_encoder")  # a missing folder fails here, not after loading it

        if transformer.get("patch_size_t") is not None:
            fail(f"patch_size_t={transformer['patch_size_t']} (CogVideoX 1.5) is not supported: its tokens span "
                 f"{transformer['patch_size_t']} latent frames and its pipelines pad the latent frame count")
        latent = int(vae.get("latent_channels", 16))
        in_channels = int(transformer.get("in_channels", 16))
        if in_channels != cls.latent_channel_factor * latent:
            fail(f"the transformer takes {in_channels} input channels and the VAE makes {latent}; this family "
                 f"expects {cls.latent_channel_factor}x (is it a {cls.other_family} checkpoint?)")
        multiple = cls.vae_compression(vae)[1] * cls.patch_size(transformer)[1]
        if multiple != cls.spatial_multiple:
            fail(f"VAE x patch downsampling is {multiple}; this family expects {cls.spatial_multiple}")
        rotary = bool(transformer.get("use_rotary_positional_embeddings", False))
        learned = bool(transformer.get("use_learned_positional_embeddings", False))
        if not rotary or learned:  # the patch embedding adds a table over (max text tokens + video tokens)
            text = int(transformer.get("max_text_seq_length", 226))
            if options["max_text_tokens"] != text:
                fail(f"max_text_tokens={options['max_text_tokens']}, but this transformer's positional table "
                     f"is laid out for max_text_seq_length={text} text tokens; set max_text_tokens: {text}")
        if learned:  # learned positional embeddings exist for the training size only
            size = [8 * int(transformer.get("sample_height", 60)), 8 * int(transformer.get("sample_width", 90))]
            frames = int(transformer.get("sample_frames", 49))
            if list(options["resolution"]) != size or options["frames"] != frames:
                fail(f"learned positional embeddings fix the input to {frames} frames at {size[0]}x{size[1]}; "
                     f"got frames={options['frames']}, resolution={list(options['resolution'])}")

    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """As the pipelines: ``temporal_compression_ratio`` in time, x2 per block after the first in space."""
        return int(vae.get("temporal_compression_ratio", 4)), 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        patch = int(transformer.get("patch_size", 2))
        return int(transformer.get("patch_size_t") or 1), patch, patch

    @staticmethod
    def encode_video(extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Posterior mean times ``scaling_factor``, permuted to (B, F, C, H, W) as the pipelines hold latents."""
        vae = extractor.vae
        z = vae.encode(video).latent_dist.mode()
        return (z * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)

    @classmethod
    def load_conditioning(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        """A light pipeline (VAE + transformer, no text parts) for its rotary method; rotary cache per shape."""
        pipe = None
        if extractor.transformer.config.use_rotary_positional_embeddings:
            pipe = cls.light_pipeline(vae=extractor.vae, transformer=extractor.transformer)
        return {"pipeline": pipe, "rotary": {}}

    @staticmethod
    def rotary_embeddings(extractor: DiffusionVideoExtractor, latent_shape: tuple[int, ...]) -> Any:
        """(cos, sin) for this latent shape, from the pipeline's ``_prepare_rotary_positional_embeddings``."""
        _, frames, _, height, width = latent_shape
        cache = extractor.conditioning["rotary"]
        if (frames, height, width) not in cache:
            pipe = extractor.conditioning["pipeline"]
            scale = pipe.vae_scale_factor_spatial  # the method takes pixel sizes
            cache[frames, height, width] = pipe._prepare_rotary_positional_embeddings(
                height * scale, width * scale, frames, extractor.device)
        return cache[frames, height, width]

    @classmethod
    def forward(cls, extractor: DiffusionVideoExtractor, transformer: Any, noisy: Any, level: NoiseLevel,
                clip_inputs: dict[str, Any]) -> Any:
        """The pipeline's transformer call for one step; returns the transformer's output tuple."""
        import torch

        config = transformer.config
        condition = clip_inputs.get("condition")  # I2V: concatenated on channels, as the pipeline does
        inputs = {"hidden_states": noisy if condition is None else torch.cat([noisy, condition], dim=2)}
        if config.use_rotary_positional_embeddings:
            inputs["image_rotary_emb"] = cls.rotary_embeddings(extractor, noisy.shape)
        if config.ofs_embed_dim is not None:  # as CogVideoXImageToVideoPipeline passes it
            inputs["ofs"] = noisy.new_full((1,), fill_value=2.0)
        return transformer(**inputs, encoder_hidden_states=extractor.prompt["encoder_hidden_states"],
                           timestep=torch.tensor([int(level.fed)], dtype=torch.long, device=noisy.device),
                           return_dict=False)

    @classmethod
    def block_tokens(cls, extractor: DiffusionVideoExtractor, output: Any, block_list: str) -> Any:
        return output[0]  # (video_tokens (B, F'h'w', D), text_tokens): raster order over (frame, row, column)

    @classmethod
    def attention_tokens(cls, extractor: DiffusionVideoExtractor, value: Any, block_list: str) -> Any:
        """CogVideoX attends over [text; video]: q/k come normalised per head as (B, H, S + N, D), v as
        (B, S + N, H*D); the S text tokens come first and are dropped."""
        text = extractor.prompt["encoder_hidden_states"].shape[1]
        tokens = value.transpose(1, 2).flatten(2) if value.dim() == 4 else value
        return tokens[:, text:]

    @staticmethod
    def latent_grid(latent_shape: tuple[int, ...], config: Any) -> tuple[int, int, int]:
        _, frames, _, height, width = latent_shape  # (B, F, C, H, W)
        p = config.patch_size
        p_t = config.patch_size_t or 1
        return -(-frames // p_t), height // p, width // p


class CogVideoXI2V(CogVideoXT2V):
    """CogVideoX image-to-video: the first frame's latents, zero-padded in time, concatenated on channels."""

    family: ClassVar[str] = "cogvideox-i2v"
    description: ClassVar[str] = "CogVideoX image-to-video, conditioned on the clip's first frame"
    pipeline: ClassVar[str] = "CogVideoXImageToVideoPipeline"
    presets = {"CogVideoX-5b-I2V": cogvideox_preset("THUDM/CogVideoX-5b-I2V", "cogvideox-i2v", 42, 3072)}
    tiny_models = {"tiny-cogvideox-i2v": COGVIDEOX_TINY["tiny-cogvideox-i2v"]}
    latent_channel_factor: ClassVar[int] = 2
    other_family: ClassVar[str] = "cogvideox-t2v"

    @staticmethod
    def condition_latents(vae: Any, video: Any, latent_frames: int) -> Any:
        """As ``CogVideoXImageToVideoPipeline.prepare_latents``: frame 0 encoded alone (posterior mean here,
        a sample there), scaled, then zeros for the other latent frames; (B, F, C, H, W)."""
        import torch

        first = vae.encode(video[:, :, :1]).latent_dist.mode().permute(0, 2, 1, 3, 4)
        if not vae.config.get("invert_scale_latents", False):
            first = vae.config.scaling_factor * first
        else:
            first = 1 / vae.config.scaling_factor * first
        padding = first.new_zeros((first.shape[0], latent_frames - 1, *first.shape[2:]))
        return torch.cat([first, padding], dim=1)

    @classmethod
    def clip_conditioning(cls, extractor: DiffusionVideoExtractor, video: Any, frames: np.ndarray,
                          latents: Any = None) -> dict[str, Any]:
        # Not the pipeline's prepare_latents itself: it encodes the image with a posterior *sample*.
        latent_frames = (video.shape[2] - 1) // cls.temporal_compression + 1
        return {"condition": cls.condition_latents(extractor.vae, video, latent_frames).to(extractor.dtype)}


# --- extractors ----------------------------------------------------------------------------------------

class CogVideoXT2VExtractor(DiffusionVideoExtractor):
    family_spec = CogVideoXT2V


class CogVideoXI2VExtractor(DiffusionVideoExtractor):
    family_spec = CogVideoXI2V


EXTRACTORS = (CogVideoXT2VExtractor, CogVideoXI2VExtractor)
