"""Wan2.1 (diffusers) as a feature source: the family's pieces of the recipe in :mod:`extractors.diffusion`.

A family is a small class of static facts and hooks: which components it needs, where its blocks are, how
its pipeline encodes the prompt and normalises VAE latents, how its transformer is called and lays out
tokens, and which clip frame each latent frame starts at. Nothing branches on model names.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.diffusion import DiffusionVideoExtractor, VideoFamilySpec


class WanT2VSpec(VideoFamilySpec):
    """Wan2.1 text-to-video: UMT5 text encoder, causal 3-D VAE (x4 time, x8 space), patch (1, 2, 2)."""

    pipeline: ClassVar[str] = "WanPipeline"
    components: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")
    blocks_attr: ClassVar[str] = "blocks"
    num_layers_key: ClassVar[str] = "num_layers"
    spatial_multiple: ClassVar[int] = 16  # VAE x8 then patch x2

    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """As WanPipeline: x2 in space per downsample stage, x2 in time where ``temperal_downsample`` says."""
        stages = vae.get("temperal_downsample", [False, True, True])  # (sic) diffusers' key and default
        return 2 ** sum(map(bool, stages)), 2 ** len(stages)

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        p_t, p_h, p_w = transformer.get("patch_size", [1, 2, 2])
        return int(p_t), int(p_h), int(p_w)

    @staticmethod
    def encode_video(vae: Any, video: Any) -> Any:
        """Posterior mean, normalised per channel as WanPipeline does: (z - mean) / std."""
        import torch

        z = vae.encode(video).latent_dist.mode()
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(z)
        std = torch.tensor(vae.config.latents_std).view(shape).to(z)
        return (z - mean) / std

    @staticmethod
    def load_conditioning(extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        """Models needed for per-clip conditioning, loaded once per job (none for text-to-video)."""
        return {}

    @staticmethod
    def clip_conditioning(extractor: DiffusionVideoExtractor, video: Any, frames: np.ndarray) -> dict[str, Any]:
        """Per-clip inputs besides the noisy latents, computed once per clip (none for text-to-video)."""
        return {}

    @staticmethod
    def forward(extractor: DiffusionVideoExtractor, noisy: Any, timestep: int, clip_inputs: dict[str, Any]) -> None:
        import torch

        condition = clip_inputs.get("condition")
        hidden = noisy if condition is None else torch.cat([noisy, condition], dim=1)
        extractor.transformer(hidden_states=hidden, timestep=torch.tensor([float(timestep)], device=noisy.device),
                              encoder_hidden_states=extractor.text,
                              encoder_hidden_states_image=clip_inputs.get("image_embeds"), return_dict=False)

    @staticmethod
    def block_tokens(output: Any) -> Any:
        return output  # (B, F'h'w', D), raster order over (frame, row, column)

    @staticmethod
    def latent_grid(latent_shape: tuple[int, ...], config: Any) -> tuple[int, int, int]:
        p_t, p_h, p_w = config.patch_size
        _, _, frames, height, width = latent_shape
        return frames // p_t, height // p_h, width // p_w


class WanI2VSpec(WanT2VSpec):
    """Wan2.1 image-to-video: conditioned on the clip's first frame as WanImageToVideoPipeline does it —
    CLIP image embedding (penultimate hidden state) plus a mask and condition latents concatenated on
    channels with the noisy latents."""

    pipeline: ClassVar[str] = "WanImageToVideoPipeline"
    components: ClassVar[tuple[str, ...]] = WanT2VSpec.components + ("image_encoder", "image_processor")

    @staticmethod
    def load_conditioning(extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        checkpoint = extractor.checkpoint
        encoder = checkpoint.load("image_encoder", torch_dtype=extractor.dtype).to(extractor.device).eval()
        return {"image_encoder": encoder, "image_processor": checkpoint.load("image_processor")}

    @classmethod
    def clip_conditioning(cls, extractor: DiffusionVideoExtractor, video: Any, frames: np.ndarray) -> dict[str, Any]:
        # The pipeline's own encode_image and prepare_latents, on a pipeline holding the parts they use.
        pipe = cls.light_pipeline(vae=extractor.vae, **extractor.conditioning)
        first_frame = video[:, :, 0]  # (1, 3, H, W) in [-1, 1], as the pipeline's preprocessing gives it
        height, width = first_frame.shape[-2:]
        _, condition = pipe.prepare_latents(
            first_frame, 1, num_channels_latents=extractor.vae.config.z_dim, height=height, width=width,
            num_frames=video.shape[2], dtype=extractor.dtype, device=extractor.device,
            latents=video.new_zeros(1))
        image_embeds = pipe.encode_image(frames[0], extractor.device).to(extractor.dtype)
        return {"condition": condition.to(extractor.dtype), "image_embeds": image_embeds}


class WanT2VExtractor(DiffusionVideoExtractor):
    family = "wan-t2v"
    family_spec = WanT2VSpec


class WanI2VExtractor(DiffusionVideoExtractor):
    family = "wan-i2v"
    family_spec = WanI2VSpec
