"""Wan2.1 (diffusers) as a feature source: its :class:`~extractors.diffusion.VideoFamily`, presets and tiny
models. The recipe itself is :class:`~extractors.diffusion.DiffusionVideoExtractor`; nothing here branches
on model names.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.base import OptionError
from extractors.diffusion import DEFAULT_OPTIONS, DiffusionVideoExtractor, NoiseLevel, VideoFamily
from extractors.presets import Preset

# --- tiny random-init models (built by extractors.tiny_models.build_tiny_model) ------------------------

WAN_TINY_T2V: dict[str, Any] = {
    "pipeline": "WanPipeline",
    "transformer": ("WanTransformer3DModel", {
        "patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 4,
        "out_channels": 4, "text_dim": 16, "freq_dim": 32, "ffn_dim": 32, "num_layers": 3, "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 32}),
    "vae": ("AutoencoderKLWan", {
        "base_dim": 8, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
        "temperal_downsample": [False, True, True], "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4}),
    "scheduler": ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0, "num_train_timesteps": 1000}),
    "text_encoder": ("UMT5EncoderModel", {
        "vocab_size": 32, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 1, "num_heads": 2,
        "relative_attention_num_buckets": 8}),
}

WAN_TINY_I2V: dict[str, Any] = {
    **WAN_TINY_T2V,
    "pipeline": "WanImageToVideoPipeline",
    # noisy latents (4) + first-frame mask (4 = temporal compression) + condition latents (4)
    "transformer": ("WanTransformer3DModel", {**WAN_TINY_T2V["transformer"][1], "in_channels": 12, "image_dim": 32,
                                              "added_kv_proj_dim": 24}),
    "image_encoder": ("CLIPVisionModel", {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 16, "projection_dim": 16}),
    "image_processor": ("CLIPImageProcessor", {
        "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}),
}

WAN_OPTIONS = {**DEFAULT_OPTIONS, "frames": 81, "resolution": [480, 832], "max_text_tokens": 512}


def wan_preset(hub_id: str, family: str, blocks: int, channels: int, **options: Any) -> Preset:
    """The paper's Wan probing: layers 18 and 20 at timestep 500 (its "index 749"), 81 frames at 480x832."""
    return Preset(family, hub_id, blocks, channels, (18, 20), timestep=500,
                  options={"frames": 81, "resolution": [480, 832], "max_text_tokens": 512, **options})


# --- families ------------------------------------------------------------------------------------------

class WanT2V(VideoFamily):
    """Wan2.1 text-to-video: UMT5 text encoder, causal 3-D VAE (x4 time, x8 space), patch (1, 2, 2)."""

    family: ClassVar[str] = "wan-t2v"
    description: ClassVar[str] = "Wan2.1 text-to-video (WanTransformer3DModel)"
    pipeline: ClassVar[str] = "WanPipeline"
    default_options = WAN_OPTIONS
    presets = {
        "Wan2.1-T2V-1.3B": wan_preset("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan-t2v", 30, 1536),
        "Wan2.1-T2V-14B": wan_preset("Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan-t2v", 40, 5120),
    }
    tiny_models = {"tiny-wan-t2v": WAN_TINY_T2V}

    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """As WanPipeline: x2 in space per downsample stage, x2 in time where ``temperal_downsample`` says."""
        stages = vae.get("temperal_downsample", [False, True, True])  # (sic) diffusers' key and default
        return 2 ** sum(map(bool, stages)), 2 ** len(stages)

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        p_t, p_h, p_w = transformer.get("patch_size", [1, 2, 2])
        return int(p_t), int(p_h), int(p_w)

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """Besides the VAE's time compression: a Wan2.2 checkpoint is refused, since this family would run its
        high-noise expert at every timestep (A14B) or size its grid by the wrong VAE (TI2V-5B)."""
        super().check_checkpoint(extractor)
        index, checkpoint = extractor.checkpoint.index, extractor.checkpoint
        marks = [f"{key}={index[key]!r}" for key in ("boundary_ratio", "expand_timesteps") if index.get(key)]
        marks += ["a transformer_2 expert"] if "transformer_2" in checkpoint.components else []
        patch = extractor.component_config("vae").get("patch_size")
        marks += [f"a VAE with patch_size={patch}"] if patch else []
        if marks:
            raise OptionError(f"model {extractor.name!r} (checkpoint {checkpoint.location!r}): {', '.join(marks)} "
                              f"make it a Wan2.2 checkpoint; use family wan2.2-t2v, wan2.2-i2v or wan2.2-ti2v")

    @staticmethod
    def encode_video(extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Posterior mean, normalised per channel as WanPipeline does: (z - mean) / std."""
        import torch

        vae = extractor.vae
        z = vae.encode(video).latent_dist.mode()
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(z)
        std = torch.tensor(vae.config.latents_std).view(shape).to(z)
        return (z - mean) / std

    @classmethod
    def forward(cls, extractor: DiffusionVideoExtractor, transformer: Any, noisy: Any, level: NoiseLevel,
                clip_inputs: dict[str, Any]) -> Any:
        import torch

        condition = clip_inputs.get("condition")
        hidden = noisy if condition is None else torch.cat([noisy, condition], dim=1)
        return transformer(hidden_states=hidden, timestep=cls.timestep_input(level, noisy, transformer),
                           encoder_hidden_states=extractor.prompt["encoder_hidden_states"],
                           encoder_hidden_states_image=clip_inputs.get("image_embeds"), return_dict=False)

    @staticmethod
    def timestep_input(level: NoiseLevel, noisy: Any, transformer: Any) -> Any:
        """The (1,) timestep tensor WanPipeline passes."""
        import torch

        return torch.tensor([level.fed], device=noisy.device)


class WanI2V(WanT2V):
    """Wan2.1 image-to-video: conditioned on the clip's first frame as WanImageToVideoPipeline does it —
    CLIP image embedding (penultimate hidden state) plus a mask and condition latents concatenated on
    channels with the noisy latents."""

    family: ClassVar[str] = "wan-i2v"
    description: ClassVar[str] = "Wan2.1 image-to-video, conditioned on the clip's first frame"
    pipeline: ClassVar[str] = "WanImageToVideoPipeline"
    components: ClassVar[tuple[str, ...]] = WanT2V.components + ("image_encoder", "image_processor")
    presets = {"Wan2.1-I2V-14B-480P": wan_preset("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan-i2v", 40, 5120)}
    tiny_models = {"tiny-wan-i2v": WAN_TINY_I2V}

    @classmethod
    def load_conditioning(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        return {"image_encoder": extractor.load_component("image_encoder", torch_dtype=extractor.dtype),
                "image_processor": extractor.load_component("image_processor")}

    @classmethod
    def clip_conditioning(cls, extractor: DiffusionVideoExtractor, video: Any, frames: np.ndarray,
                          latents: Any = None) -> dict[str, Any]:
        # The pipeline's own encode_image and prepare_latents, on a pipeline holding the parts they use.
        pipe = cls.light_pipeline(vae=extractor.vae, **extractor.conditioning)
        _, condition = cls.prepare_condition(extractor, pipe, video)
        image_embeds = pipe.encode_image(frames[0], extractor.device).to(extractor.dtype)
        return {"condition": condition.to(extractor.dtype), "image_embeds": image_embeds}

    @staticmethod
    def prepare_condition(extractor: DiffusionVideoExtractor, pipe: Any, video: Any) -> tuple[Any, Any]:
        """The pipeline's ``prepare_latents`` for the first frame: (latents, condition)."""
        first_frame = video[:, :, 0]  # (1, 3, H, W) in [-1, 1], as the pipeline's preprocessing gives it
        height, width = first_frame.shape[-2:]
        return pipe.prepare_latents(
            first_frame, 1, num_channels_latents=extractor.vae.config.z_dim, height=height, width=width,
            num_frames=video.shape[2], dtype=extractor.dtype, device=extractor.device,
            latents=video.new_zeros(1))


class WanT2VExtractor(DiffusionVideoExtractor):
    family_spec = WanT2V


class WanI2VExtractor(DiffusionVideoExtractor):
    family_spec = WanI2V


EXTRACTORS = (WanT2VExtractor, WanI2VExtractor)
