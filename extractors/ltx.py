"""LTX-Video (diffusers) as a feature source: its :class:`~extractors.diffusion.VideoFamily`, presets and tiny
model. The recipe itself is :class:`~extractors.diffusion.DiffusionVideoExtractor`.

The family runs the transformer as ``LTXPipeline`` does (LTX-Video 0.9.0 and 0.9.1): latents normalised with
the VAE's ``latents_mean``/``latents_std`` and ``scaling_factor`` and packed to (B, F*H*W, C) by the pipeline's
own helpers; the empty prompt's T5 embeddings *and* attention mask; rotary positions from the latent grid and
``rope_interpolation_scale`` = (temporal compression / ``frame_rate``, spatial compression, spatial compression).

Timesteps: the pipeline feeds the transformer ``t = 1000 * sigma`` of the noise it holds; its resolution-
dependent shift (``mu`` from the latent token count, :func:`shift_mu`) only decides which sigmas a sampling run
visits. So the configured timestep is the value fed to the denoiser and sigma = t / 1000, as for every flow
family; ``mu`` for the configured clip size is recorded with the store's provenance.

Checkpoints made for ``LTXConditionPipeline`` (0.9.5 and later: causal video coordinates instead of
``rope_interpolation_scale``, another sampling schedule) are refused with a clear error.
"""

from __future__ import annotations

from typing import Any, ClassVar

from extractors.base import OptionError
from extractors.diffusion import (
    DEFAULT_OPTIONS,
    DiffusionVideoExtractor,
    NoiseLevel,
    VideoFamily,
    pipeline_class,
)
from extractors.presets import Preset

# --- tiny random-init model (built by extractors.tiny_models.build_tiny_model) ---------------------------

# The scheduler_config.json of Lightricks/LTX-Video (0.9.0) and 0.9.1: resolution-dependent shift.
LTX_SCHEDULER = ("FlowMatchEulerDiscreteScheduler", {
    "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05,
    "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1, "invert_sigmas": False})

LTX_TINY: dict[str, Any] = {
    "pipeline": "LTXPipeline",
    "tokenizers": {"tokenizer": "extractors.tiny_models:t5_tokenizer_with_eos"},
    "transformer": ("LTXVideoTransformer3DModel", {
        "in_channels": 8, "out_channels": 8, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 2,
        "attention_head_dim": 8, "cross_attention_dim": 16, "num_layers": 3, "caption_channels": 16}),
    # The real VAE's layout (patch 4, three space-time downsamplings: x8 time, x32 space), 8 channels wide.
    "vae": ("AutoencoderKLLTXVideo", {
        "latent_channels": 8, "block_out_channels": [8, 8, 8, 8], "decoder_block_out_channels": [8, 8, 8, 8],
        "layers_per_block": [1, 1, 1, 1, 1], "decoder_layers_per_block": [1, 1, 1, 1, 1],
        "spatio_temporal_scaling": [True, True, True, False],
        "decoder_spatio_temporal_scaling": [True, True, True, False], "decoder_inject_noise": [False] * 5,
        "upsample_residual": [False] * 4, "upsample_factor": [1] * 4, "patch_size": 4, "patch_size_t": 1,
        "timestep_conditioning": False}),
    "scheduler": LTX_SCHEDULER,
    "text_encoder": ("T5EncoderModel", {
        "vocab_size": 32, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 1, "num_heads": 2,
        "relative_attention_num_buckets": 8}),
}


LTX_OPTIONS = {
    **DEFAULT_OPTIONS,
    # 8k+1 frames: 16 latent frames (LTX trains on up to 257 frames). 480 px high like the paper's other VGMs,
    # 704 wide as LTXPipeline's default width and its documented 480x704 example; both multiples of 32.
    "frames": 121, "resolution": [480, 704],
    "max_text_tokens": 128,  # LTXPipeline's max_sequence_length
    "frame_rate": 25,  # LTXPipeline's default; sets the temporal rotary scale (8 / frame_rate)
}


def ltx_preset(hub_id: str) -> Preset:
    """LTX-Video 2B (28 blocks of 32 x 64 channels). The paper did not probe it: layers at the relative depth
    of its 18 and 20 of 30 (round(28 * 18 / 30), round(28 * 20 / 30)), timestep 500 (sigma 0.5)."""
    return Preset("ltx-video", hub_id, 28, 2048, (17, 19), timestep=500,
                  options={"frames": 121, "resolution": [480, 704], "max_text_tokens": 128})


def shift_mu(scheduler: dict[str, Any], tokens: int) -> float:
    """LTXPipeline's ``mu`` for a clip of ``tokens`` latent tokens: its own ``calculate_shift`` with the
    scheduler config values (and defaults) it passes."""
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    return float(calculate_shift(tokens, scheduler.get("base_image_seq_len", 256),
                                 scheduler.get("max_image_seq_len", 4096), scheduler.get("base_shift", 0.5),
                                 scheduler.get("max_shift", 1.15)))


# --- family --------------------------------------------------------------------------------------------

class LTXVideo(VideoFamily):
    """LTX-Video text-to-video: T5 text encoder, causal VAE (x8 time, x32 space, patch 4 inside), patch 1."""

    family: ClassVar[str] = "ltx-video"
    description: ClassVar[str] = "LTX-Video 0.9.0/0.9.1 text-to-video (LTXVideoTransformer3DModel)"
    timestep_meaning: ClassVar[str] = "value fed to the denoiser (0 = clean, sigma = t/1000)"
    pipeline: ClassVar[str] = "LTXPipeline"
    block_lists: ClassVar[tuple[str, ...]] = ("transformer_blocks",)
    temporal_compression: ClassVar[int] = 8
    spatial_multiple: ClassVar[int] = 32  # VAE x32, patch 1
    default_options = LTX_OPTIONS
    presets = {
        "LTX-Video": ltx_preset("Lightricks/LTX-Video"),  # 0.9.0 in diffusers layout
        "LTX-Video-0.9.1": ltx_preset("Lightricks/LTX-Video-0.9.1"),
    }
    tiny_models = {"tiny-ltx-video": LTX_TINY}

    # --- configs ------------------------------------------------------------------------------------
    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """As ``AutoencoderKLLTXVideo``: the explicit ratios when the config has them (0.9.5+), else the patch
        times x2 per space-time downsampling stage."""
        stages = 2 ** sum(map(bool, vae.get("spatio_temporal_scaling", [True, True, True, False])))
        temporal = vae.get("temporal_compression_ratio") or int(vae.get("patch_size_t", 1)) * stages
        spatial = vae.get("spatial_compression_ratio") or int(vae.get("patch_size", 4)) * stages
        return int(temporal), int(spatial)

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        patch = int(transformer.get("patch_size", 1))
        return int(transformer.get("patch_size_t", 1)), patch, patch

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """An LTXPipeline checkpoint of LTX classes, patch 1, the transformer taking the VAE's latents."""
        super().check_checkpoint(extractor)
        checkpoint = extractor.checkpoint

        fail = extractor.refuse_checkpoint

        pipeline = checkpoint.index.get("_class_name")
        if pipeline == "LTXConditionPipeline":
            fail("it is an LTXConditionPipeline checkpoint (LTX-Video 0.9.5 or later), whose transformer that "
                 "pipeline runs with causal video coordinates and another schedule; family 'ltx-video' serves "
                 "LTXPipeline checkpoints (0.9.0, 0.9.1)")
        expected = {"transformer": "LTXVideoTransformer3DModel", "vae": "AutoencoderKLLTXVideo"}
        for component, class_name in expected.items():
            found = checkpoint.components[component][1]
            if found != class_name:
                fail(f"its {component} is a {found}, not a {class_name} ({pipeline or 'unknown pipeline'}); "
                     f"is it a checkpoint of another family?")
        transformer, vae = extractor.component_config("transformer"), extractor.component_config("vae")
        if cls.patch_size(transformer) != (1, 1, 1):
            fail(f"patch size {cls.patch_size(transformer)}: LTXPipeline gives the rotary embedding the latent "
                 f"grid, which matches the tokens only for patch (1, 1, 1)")
        if cls.vae_compression(vae)[1] != cls.spatial_multiple:
            fail(f"the VAE compresses space x{cls.vae_compression(vae)[1]}; this family expects x32")
        latent, in_channels = int(vae.get("latent_channels", 128)), int(transformer.get("in_channels", 128))
        if latent != in_channels:
            fail(f"the transformer takes {in_channels} channels and the VAE makes {latent}")

    # --- prompt, latents, forward ----------------------------------------------------------------------
    @classmethod
    def encode_prompt(cls, extractor: DiffusionVideoExtractor, parts: dict[str, Any]) -> dict[str, Any]:
        """LTXPipeline's ``encode_prompt`` (four values: embeds, mask, negative embeds, negative mask): the empty
        prompt's embeddings and mask as the pipeline passes them without guidance."""
        pipe = cls.light_pipeline(**parts)
        embeds, mask, _, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                                max_sequence_length=extractor.options["max_text_tokens"],
                                                device=extractor.device)
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}

    @classmethod
    def load_conditioning(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        """A light LTXPipeline (VAE + transformer) for its packing helper and compression ratios."""
        return {"pipeline": cls.light_pipeline(vae=extractor.vae, transformer=extractor.transformer)}

    @classmethod
    def encode_video(cls, extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Posterior mean (where the LTX pipelines encode an image they take a sample; one fixed value here),
        normalised by the pipeline's ``_normalize_latents``; kept (B, C, F, H, W), the shape the pipeline draws
        its noise in, and packed in :meth:`forward`."""
        vae = extractor.vae
        z = vae.encode(video).latent_dist.mode()
        normalize = pipeline_class(cls.pipeline)._normalize_latents
        return normalize(z, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    @classmethod
    def forward(cls, extractor: DiffusionVideoExtractor, transformer: Any, noisy: Any, level: NoiseLevel,
                clip_inputs: dict[str, Any]) -> Any:
        """LTXPipeline's transformer call for one step, without guidance: packed latents, the prompt and its mask,
        the timestep t expanded to the batch, and the latent grid with the rotary interpolation scale."""
        import torch

        pipe = extractor.conditioning["pipeline"]
        _, _, frames, height, width = noisy.shape
        config = transformer.config
        packed = pipe._pack_latents(noisy, config.patch_size, config.patch_size_t)
        timestep = torch.tensor([level.fed], dtype=torch.float32, device=noisy.device).expand(packed.shape[0])
        return transformer(hidden_states=packed, encoder_hidden_states=extractor.prompt["encoder_hidden_states"],
                           timestep=timestep, encoder_attention_mask=extractor.prompt["encoder_attention_mask"],
                           num_frames=frames, height=height, width=width,
                           rope_interpolation_scale=cls.rope_interpolation_scale(extractor), return_dict=False)

    @staticmethod
    def rope_interpolation_scale(extractor: DiffusionVideoExtractor) -> tuple[float, int, int]:
        """As LTXPipeline: (temporal compression / frame_rate, spatial compression, spatial compression)."""
        pipe = extractor.conditioning["pipeline"]
        spatial = pipe.vae_spatial_compression_ratio
        return pipe.vae_temporal_compression_ratio / extractor.options["frame_rate"], spatial, spatial

    @staticmethod
    def latent_grid(latent_shape: tuple[int, ...], config: Any) -> tuple[int, int, int]:
        _, _, frames, height, width = latent_shape  # (B, C, F, H, W), packed frame-major as _pack_latents does
        return frames // config.patch_size_t, height // config.patch_size, width // config.patch_size

    # --- records ---------------------------------------------------------------------------------------
    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        """The pipeline's shift for the configured clip size (it changes which timesteps a 50-step sampling run
        visits, not what a timestep means) and the rotary scale the forward used."""
        scheduler = extractor.component_config("scheduler")
        temporal, spatial = cls.vae_compression(extractor.component_config("vae"))
        height, width = extractor.options["resolution"]
        tokens = ((extractor.options["frames"] - 1) // temporal + 1) * (height // spatial) * (width // spatial)
        shift = {}
        if scheduler.get("use_dynamic_shifting", False):  # else the pipeline's mu is ignored by the scheduler
            shift = {"shift_mu": shift_mu(scheduler, tokens), "shift_sequence_length": tokens}
        return {**shift, "frame_rate": extractor.options["frame_rate"],
                "rope_interpolation_scale": [temporal / extractor.options["frame_rate"], spatial, spatial]}


class LTXVideoExtractor(DiffusionVideoExtractor):
    family_spec = LTXVideo

    def validate_options(self) -> None:
        super().validate_options()
        rate = self.options["frame_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise OptionError(f"model {self.name!r}: option frame_rate={rate!r} must be a positive number "
                              f"(frames per second; LTXPipeline's default is 25)")


EXTRACTORS = (LTXVideoExtractor,)
