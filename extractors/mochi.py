"""Mochi 1 (diffusers) as a feature source: its :class:`~extractors.diffusion.VideoFamily`, preset and tiny model.

``MochiTransformer3DModel`` (AsymmDiT): 48 blocks of joint attention over [video; text] with separate
projections per stream (``to_q/k/v`` and ``norm_q/k`` for video, ``add_*_proj`` and ``norm_added_*`` for
text); blocks return ``(video_tokens, text_tokens)``. The VAE (``AutoencoderKLMochi``) is causal, x6 in time
(expansions 1, 2, 3) and x8 in space; with patch 2 a token covers 16x16 pixels of a latent frame. Latent 0
encodes frame 0 alone and latent k >= 1 frames 6k-5 .. 6k, so the base class's causal frame map holds
(0, 1, 7, 13, ...).

Mochi reverses the timestep: the transformer was trained with 0 = pure noise and 1000 = clean.
``MochiPipeline`` runs ``FlowMatchEulerDiscreteScheduler`` with ``invert_sigmas: true`` on a linear-quadratic
schedule of noise levels sigma (1 -> 0.025): the scheduler stores 1 - sigma and feeds the transformer
``timesteps = 1000 * (1 - sigma)``, while the latent is ``(1 - sigma) x0 + sigma eps`` (its Euler step with a
velocity x0 - eps walks exactly that path). Here the configured ``timestep`` is the noise level x 1000
(0 = clean, as for every flow family): sigma = timestep / 1000 and the transformer receives 1000 - timestep.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from extractors.diffusion import (
    DEFAULT_OPTIONS,
    DiffusionVideoExtractor,
    NoiseLevel,
    VideoFamily,
    noise_level,
    schedule_kind,
)
from extractors.presets import Preset

# --- tiny random-init model (built by extractors.tiny_models.build_tiny_model) --------------------------


MOCHI_TINY: dict[str, Any] = {
    "pipeline": "MochiPipeline",
    "tokenizers": {"tokenizer": "extractors.tiny_models:t5_tokenizer_with_eos"},
    # The real layout (12 input channels = VAE latents, patch 2, RMS q/k norms), shrunk; 3 blocks so the last
    # (context_pre_only, no text output) and a middle one both exist.
    "transformer": ("MochiTransformer3DModel", {
        "patch_size": 2, "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 3,
        "pooled_projection_dim": 16, "in_channels": 12, "qk_norm": "rms_norm", "text_embed_dim": 16,
        "time_embed_dim": 8, "activation_fn": "swiglu", "max_sequence_length": 8}),
    # Real expansions (x6 time, x8 space) and 12 latent channels (the pipeline hard-codes 12 when it
    # denormalises); 32 channels is the group norm's minimum; no resnet at full resolution (the costliest
    # layer on a CPU), one in every down block. latents_mean/std keep the real defaults; scaling_factor is 1.0
    # in the real VAE, another value here so the tests see where it applies.
    "vae": ("AutoencoderKLMochi", {
        "latent_channels": 12, "encoder_block_out_channels": [32, 32, 32, 32],
        "decoder_block_out_channels": [32, 32, 32, 32], "layers_per_block": [0, 1, 1, 1, 1],
        "temporal_expansions": [1, 2, 3], "spatial_expansions": [2, 2, 2], "scaling_factor": 0.8}),
    # genmo/mochi-1-preview's scheduler_config.json.
    "scheduler": ("FlowMatchEulerDiscreteScheduler", {
        "num_train_timesteps": 1000, "shift": 1.0, "invert_sigmas": True, "use_dynamic_shifting": False,
        "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}),
    "text_encoder": ("T5EncoderModel", {
        "vocab_size": 32, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 1, "num_heads": 2,
        "relative_attention_num_buckets": 8}),
}

# 85 = 6*14 + 1: the shortest clip the VAE takes that covers the paper's 81 frames (the pipeline's default
# is 19; Mochi generates up to 163). 480x848 and 256 text tokens are MochiPipeline's defaults.
MOCHI_OPTIONS = {**DEFAULT_OPTIONS, "frames": 85, "resolution": [480, 848], "max_text_tokens": 256}


def mochi_preset(hub_id: str, blocks: int, channels: int) -> Preset:
    """Not probed by the paper: its Wan layers 18 and 20 of 30 at the same relative depth
    (round(N * 18 / 30), round(N * 20 / 30)), and timestep 500 (sigma 0.5)."""
    layers = (round(blocks * 18 / 30), round(blocks * 20 / 30))
    return Preset("mochi", hub_id, blocks, channels, layers, timestep=500,
                  options={"frames": 85, "resolution": [480, 848], "max_text_tokens": 256})


# --- family --------------------------------------------------------------------------------------------

class Mochi(VideoFamily):
    """Mochi 1 text-to-video: T5 text encoder (with its attention mask), causal AsymmVAE (x6 time, x8 space),
    patch 2, joint attention with separate video and text projections."""

    family: ClassVar[str] = "mochi"
    description: ClassVar[str] = "Mochi 1 text-to-video (MochiTransformer3DModel, AsymmDiT)"
    timestep_meaning: ClassVar[str] = ("noise level x 1000 (0 = clean, sigma = timestep/1000); the transformer "
                                       "is fed 1000 - timestep, Mochi's reversed scale")
    pipeline: ClassVar[str] = "MochiPipeline"
    block_lists: ClassVar[tuple[str, ...]] = ("transformer_blocks",)
    temporal_compression: ClassVar[int] = 6
    spatial_multiple: ClassVar[int] = 16  # VAE x8, then patch x2
    default_options = MOCHI_OPTIONS
    presets = {"Mochi-1-preview": mochi_preset("genmo/mochi-1-preview", 48, 3072)}
    tiny_models = {"tiny-mochi": MOCHI_TINY}
    classes: ClassVar[dict[str, str]] = {"transformer": "MochiTransformer3DModel", "vae": "AutoencoderKLMochi"}

    # --- configs ---------------------------------------------------------------------------------------
    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """The products of the VAE's down-block expansions, as ``AutoencoderKLMochi`` computes its ratios."""
        return (math.prod(vae.get("temporal_expansions", (1, 2, 3))),
                math.prod(vae.get("spatial_expansions", (2, 2, 2))))

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        patch = int(transformer.get("patch_size", 2))
        return 1, patch, patch

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """A Mochi pipeline (by its component classes), a VAE making the latents the transformer takes, and
        the inverted flow-matching scheduler MochiPipeline needs (no weights loaded)."""
        checkpoint, fail = extractor.checkpoint, extractor.refuse_checkpoint

        for component, expected in cls.classes.items():
            found = checkpoint.components[component][1]
            if found != expected:
                fail(f"the {component} is {found}; the mochi family needs {expected} (is it another family's "
                     f"checkpoint?)")
        super().check_checkpoint(extractor)
        latent = int(extractor.component_config("vae").get("latent_channels", 12))
        in_channels = int(extractor.transformer_config.get("in_channels", 12))
        if in_channels != latent:
            fail(f"the transformer takes {in_channels} input channels and the VAE makes {latent}")
        scheduler = extractor.component_config("scheduler")
        class_name = scheduler.get("_class_name", "scheduler")
        if schedule_kind(class_name, scheduler) != "flow" or not scheduler.get("invert_sigmas", False):
            fail(f"the scheduler is {class_name} with invert_sigmas={scheduler.get('invert_sigmas', False)}; "
                 f"MochiPipeline needs FlowMatchEulerDiscreteScheduler with invert_sigmas: true (its transformer "
                 f"takes 1000 - timestep)")

    # --- loading and per-clip inputs -------------------------------------------------------------------
    @classmethod
    def encode_prompt(cls, extractor: DiffusionVideoExtractor, parts: dict[str, Any]) -> dict[str, Any]:
        """MochiPipeline's own ``encode_prompt`` for the empty prompt: T5 states and their attention mask
        (the transformer pools text and attends only over the unmasked tokens). The checkpoint's
        ``force_zeros_for_empty_prompt`` is honoured as ``from_pretrained`` would."""
        zeros = bool(extractor.checkpoint.index.get("force_zeros_for_empty_prompt", False))
        pipe = cls.light_pipeline(**parts, force_zeros_for_empty_prompt=zeros)
        embeds, mask, _, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                                max_sequence_length=extractor.options["max_text_tokens"],
                                                device=extractor.device)
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}

    @staticmethod
    def encode_video(extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Posterior mean (the recipe's choice; Mochi has no video-to-video pipeline to follow), normalised
        with the exact inverse of MochiPipeline's denormalisation before decoding
        (``z = latents * std / scaling_factor + mean``, or ``latents / scaling_factor`` without mean/std)."""
        import torch

        vae = extractor.vae
        z = vae.encode(video).latent_dist.mode()
        config = vae.config
        if config.get("latents_mean") is None or config.get("latents_std") is None:
            return z * config.scaling_factor
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(z)
        std = torch.tensor(config.latents_std).view(shape).to(z)
        return (z - mean) * config.scaling_factor / std

    @classmethod
    def noise_level(cls, extractor: DiffusionVideoExtractor, timestep: int, latents: Any) -> NoiseLevel:
        """sigma = timestep / 1000 in ``(1 - sigma) x0 + sigma eps``; the transformer is fed what MochiPipeline
        feeds at that noise level: the inverted scheduler's ``1000 * (1 - sigma)``."""
        level = noise_level(extractor.scheduler, timestep)
        steps = int(extractor.scheduler.config.num_train_timesteps)
        return dataclasses.replace(level, model_timestep=float(steps - timestep))

    @classmethod
    def forward(cls, extractor: DiffusionVideoExtractor, transformer: Any, noisy: Any, level: NoiseLevel,
                clip_inputs: dict[str, Any]) -> Any:
        """MochiPipeline's transformer call (no guidance): its timestep is cast to the latents' dtype there too."""
        import torch

        timestep = torch.tensor([level.fed], device=noisy.device).to(noisy.dtype)
        return transformer(hidden_states=noisy, encoder_hidden_states=extractor.prompt["encoder_hidden_states"],
                           timestep=timestep, encoder_attention_mask=extractor.prompt["encoder_attention_mask"],
                           return_dict=False)

    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        return {"force_zeros_for_empty_prompt": bool(extractor.checkpoint.index.get("force_zeros_for_empty_prompt",
                                                                                    False))}

    # --- reading blocks ----------------------------------------------------------------------------------
    # Block outputs are (video, text): the default block_tokens keeps the first. attn1's norm_q / norm_k see
    # only the video stream, (B, N, heads, head_dim) before RoPE, and to_v gives (B, N, heads*head_dim): the
    # default attention_projection / attention_tokens fit (the text stream has its own add_*_proj modules).

    @staticmethod
    def latent_grid(latent_shape: tuple[int, ...], config: Any) -> tuple[int, int, int]:
        _, _, frames, height, width = latent_shape  # (B, C, F, H, W); the patch is an int, 1 in time
        return frames, height // config.patch_size, width // config.patch_size


class MochiExtractor(DiffusionVideoExtractor):
    family_spec = Mochi


EXTRACTORS = (MochiExtractor,)
