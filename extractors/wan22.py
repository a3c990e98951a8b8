"""Wan2.2 (diffusers) as a feature source: three families on the Wan2.1 spec of :mod:`extractors.wan`.

- ``wan2.2-t2v`` (T2V-A14B) and ``wan2.2-i2v`` (I2V-A14B) hold two experts of the Wan2.1-14B architecture:
  ``transformer`` for high noise and ``transformer_2`` for low noise. Their pipelines run ``transformer`` when
  t >= boundary_ratio * num_train_timesteps (``boundary_ratio`` in model_index.json: 0.875 for T2V, 0.9 for
  I2V), else ``transformer_2``; so does the extractor, which loads an expert only when a timestep first needs
  it. The paper's timestep 500 (sigma 0.5) is below both boundaries: it runs the low-noise ``transformer_2``.
- ``wan2.2-i2v`` has no image encoder (its transformers' ``image_dim`` is None): the first frame conditions
  only through the mask and condition latents that ``WanImageToVideoPipeline.prepare_latents`` concatenates
  on channels with the noisy latents.
- ``wan2.2-ti2v`` (TI2V-5B), text-to-video: one transformer and the Wan2.2 VAE (48 latent channels, x16 in
  space: its own 2x2 patchify, then x8), run as ``WanPipeline`` with ``expand_timesteps``: the timestep is
  given per token, (B, T' * h * w).

The Wan2.1 families of :mod:`extractors.wan` do not look for experts or per-token timesteps: Wan2.2
checkpoints belong here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from extractors.diffusion import DiffusionVideoExtractor, NoiseLevel, schedule_kind
from extractors.wan import WAN_OPTIONS, WAN_TINY_T2V, WanI2V, WanT2V, wan_preset

# --- tiny random-init models (built by extractors.tiny_models.build_tiny_model) ------------------------

_TRANSFORMER = WAN_TINY_T2V["transformer"][1]
_LATENT_22 = 8  # the Wan2.2 VAE's 48 latent channels, shrunk

WAN22_TINY: dict[str, dict[str, Any]] = {
    # Two experts with the same config; build_tiny_model seeds once, so their random weights differ.
    "tiny-wan2.2-t2v": {**WAN_TINY_T2V, "transformer_2": WAN_TINY_T2V["transformer"],
                        "pipeline_config": {"boundary_ratio": 0.875}},
    # noisy latents (4) + first-frame mask (4 = temporal compression) + condition latents (4); no image encoder
    "tiny-wan2.2-i2v": {
        **WAN_TINY_T2V, "pipeline": "WanImageToVideoPipeline",
        "transformer": ("WanTransformer3DModel", {**_TRANSFORMER, "in_channels": 12}),
        "transformer_2": ("WanTransformer3DModel", {**_TRANSFORMER, "in_channels": 12}),
        "pipeline_config": {"boundary_ratio": 0.9}},
    # The Wan2.2 VAE's layout (residual blocks, 2x2 patchify of 3 -> 12 channels, x16 in space), shrunk;
    # latent statistics away from (0, 1) so that the normalisation shows.
    "tiny-wan2.2-ti2v": {
        **WAN_TINY_T2V,
        "transformer": ("WanTransformer3DModel", {**_TRANSFORMER, "in_channels": _LATENT_22,
                                                  "out_channels": _LATENT_22}),
        "vae": ("AutoencoderKLWan", {
            "base_dim": 8, "decoder_base_dim": 8, "z_dim": _LATENT_22, "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 1, "temperal_downsample": [False, True, True], "is_residual": True,
            "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
            "scale_factor_temporal": 4, "latents_mean": [0.1 * k - 0.3 for k in range(_LATENT_22)],
            "latents_std": [0.5 + 0.1 * k for k in range(_LATENT_22)]}),
        "pipeline_config": {"expand_timesteps": True}},
}

TI2V_OPTIONS = {**WAN_OPTIONS, "frames": 121, "resolution": [704, 1280]}  # TI2V-5B's 720P size (24 fps)


# --- families ------------------------------------------------------------------------------------------

class Wan22(WanT2V):
    """What the Wan2.2 families share: the VAE's own patchify in the spatial compression, the pipeline's
    ``expand_timesteps``, and the checks of a checkpoint's configs against both."""

    expand_timesteps: ClassVar[bool] = False  # model_index.json's value this family follows
    other_kinds: ClassVar[str] = ""  # named in the errors for a checkpoint of another kind

    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """As AutoencoderKLWan encodes: x2 in time where ``temperal_downsample`` says; in space its own
        ``patch_size`` patchify (Wan2.2 VAE: 2; Wan2.1: none), then x2 per stage."""
        stages = vae.get("temperal_downsample", [False, True, True])  # (sic) diffusers' key and default
        return 2 ** sum(map(bool, stages)), int(vae.get("patch_size") or 1) * 2 ** len(stages)

    @classmethod
    def latent_channels(cls, vae: dict[str, Any]) -> int:
        """The transformer's input channels the pipeline builds from the VAE's latents."""
        return int(vae.get("z_dim", 16))

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        super(WanT2V, cls).check_checkpoint(extractor)  # not WanT2V's: it refuses Wan2.2 checkpoints
        vae, transformer = extractor.component_config("vae"), extractor.component_config("transformer")
        cls.check_pipeline(extractor)
        temporal, spatial = cls.vae_compression(vae)
        # The pipeline sizes its latents (and the I2V mask) by the VAE's declared factors: they must agree.
        declared = (int(vae.get("scale_factor_temporal") or 4), int(vae.get("scale_factor_spatial") or 8))
        if (temporal, spatial) != declared:
            extractor.refuse_checkpoint(
                f"the VAE compresses x{temporal} in time and x{spatial} in space, but its config declares "
                f"scale_factor_temporal={declared[0]}, scale_factor_spatial={declared[1]}")
        multiple = spatial * cls.patch_size(transformer)[1]
        if multiple != cls.spatial_multiple:
            extractor.refuse_checkpoint(
                f"VAE x patch downsampling is {multiple}; {cls.family} expects {cls.spatial_multiple} "
                f"(is it a {cls.other_kinds} checkpoint?)")
        expected, found = cls.latent_channels(vae), int(transformer.get("in_channels", 16))
        if found != expected:
            extractor.refuse_checkpoint(
                f"the transformer takes {found} input channels and the VAE makes {vae.get('z_dim')}; "
                f"{cls.family} expects {expected} (is it a {cls.other_kinds} checkpoint?)")

    @classmethod
    def check_pipeline(cls, extractor: DiffusionVideoExtractor) -> None:
        """The pipeline's own config (model_index.json) must be the one this family follows."""
        index = extractor.checkpoint.index
        expand = bool(index.get("expand_timesteps") or False)
        if expand != cls.expand_timesteps:
            extractor.refuse_checkpoint(
                f"model_index.json has expand_timesteps={index.get('expand_timesteps')}; {cls.family} "
                f"follows {cls.pipeline} with expand_timesteps={cls.expand_timesteps} (is it a "
                f"{cls.other_kinds} checkpoint?)")
        if len(cls.transformers) == 1 and (index.get("boundary_ratio") is not None
                                           or "transformer_2" in extractor.checkpoint.components):
            extractor.refuse_checkpoint(
                f"model_index.json names two experts (boundary_ratio={index.get('boundary_ratio')}); "
                f"{cls.family} runs one transformer (is it a {cls.other_kinds} checkpoint?)")

    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        return {"expand_timesteps": cls.expand_timesteps}


class Wan22TI2V(Wan22):
    """Wan2.2 TI2V-5B, text-to-video: one transformer, the Wan2.2 VAE (x16 in space), per-token timesteps."""

    family: ClassVar[str] = "wan2.2-ti2v"
    description: ClassVar[str] = "Wan2.2 TI2V-5B text-to-video (Wan2.2 VAE x16, per-token timesteps)"
    pipeline: ClassVar[str] = "WanPipeline"
    expand_timesteps: ClassVar[bool] = True
    spatial_multiple: ClassVar[int] = 32  # VAE x16 (patchify 2, then x8) then transformer patch x2
    other_kinds: ClassVar[str] = "wan2.2-t2v, wan2.2-i2v or Wan2.1"
    default_options = TI2V_OPTIONS
    presets = {"Wan2.2-TI2V-5B": wan_preset("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "wan2.2-ti2v", 30, 3072,
                                            frames=121, resolution=[704, 1280])}
    tiny_models = {"tiny-wan2.2-ti2v": WAN22_TINY["tiny-wan2.2-ti2v"]}

    @staticmethod
    def timestep_input(level: NoiseLevel, noisy: Any, transformer: Any) -> Any:
        """As WanPipeline with ``expand_timesteps`` for text-to-video: t on every token, (B, T' * h * w), from
        a mask of ones read with the pipeline's fixed 2x2 stride (check_checkpoint asks patch (1, 2, 2))."""
        import torch

        mask = torch.ones(noisy.shape, dtype=torch.float32, device=noisy.device)
        per_token = (mask[0][0][:, ::2, ::2] * torch.tensor(level.fed, device=noisy.device)).flatten()
        return per_token.unsqueeze(0).expand(noisy.shape[0], -1)

    @classmethod
    def check_pipeline(cls, extractor: DiffusionVideoExtractor) -> None:
        super().check_pipeline(extractor)
        patch = cls.patch_size(extractor.transformer_config)
        if patch[1:] != (2, 2):
            extractor.refuse_checkpoint(
                f"patch_size {list(patch)}: WanPipeline's per-token timesteps assume a 2x2 spatial patch")


class Wan22T2V(Wan22):
    """Wan2.2 T2V-A14B: two experts split at the pipeline's ``boundary_ratio``; Wan2.1 VAE and text encoder."""

    family: ClassVar[str] = "wan2.2-t2v"
    description: ClassVar[str] = "Wan2.2 T2V-A14B text-to-video, two experts split at boundary_ratio"
    pipeline: ClassVar[str] = "WanPipeline"
    transformers: ClassVar[tuple[str, ...]] = ("transformer", "transformer_2")  # high noise, low noise
    other_kinds: ClassVar[str] = "wan2.2-i2v, wan2.2-ti2v or Wan2.1"
    default_options = WAN_OPTIONS
    presets = {"Wan2.2-T2V-A14B": wan_preset("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "wan2.2-t2v", 40, 5120)}
    tiny_models = {"tiny-wan2.2-t2v": WAN22_TINY["tiny-wan2.2-t2v"]}

    @classmethod
    def denoiser(cls, level: NoiseLevel, configs: Mapping[str, Any]) -> str:
        """The pipelines run ``transformer`` when t >= boundary_ratio * num_train_timesteps, else
        ``transformer_2``. With sigma = t / num_train_timesteps (:func:`extractors.diffusion.noise_level`) that
        is sigma >= boundary_ratio; tests check every t of 0..1000 against the pipelines' formula."""
        if level.kind != "flow":
            raise ValueError(f"{cls.family}: the expert boundary is a flow-matching sigma; got a {level.kind} level")
        high, low = cls.transformers
        return high if level.value >= float(configs["boundary_ratio"]) else low

    @classmethod
    def check_pipeline(cls, extractor: DiffusionVideoExtractor) -> None:
        super().check_pipeline(extractor)
        checkpoint, ratio = extractor.checkpoint, extractor.checkpoint.index.get("boundary_ratio")
        if "transformer_2" not in checkpoint.components or ratio is None:
            extractor.refuse_checkpoint(
                f"{cls.family} runs two experts split at the pipeline's boundary_ratio (transformer: high "
                f"noise, transformer_2: low noise); model_index.json has boundary_ratio={ratio} and "
                f"components {sorted(checkpoint.components)} (is it a {cls.other_kinds} checkpoint?)")
        if not 0 < float(ratio) <= 1:
            extractor.refuse_checkpoint(
                f"boundary_ratio={ratio} is outside (0, 1]")
        first, second = (extractor.component_config(name) for name in cls.transformers)
        keys = ("num_layers", "num_attention_heads", "attention_head_dim", "patch_size", "in_channels")
        differ = {key: (first.get(key), second.get(key)) for key in keys if first.get(key) != second.get(key)}
        if differ:
            extractor.refuse_checkpoint(
                f"the experts differ in {differ} (transformer, transformer_2); layers and token grids "
                f"must be the same for both")
        scheduler = extractor.component_config("scheduler")
        if schedule_kind(scheduler.get("_class_name", ""), scheduler) != "flow":
            extractor.refuse_checkpoint(
                f"scheduler {scheduler.get('_class_name')} is not flow-matching; the expert boundary "
                f"is a sigma")

    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        ratio = float(extractor.checkpoint.index["boundary_ratio"])
        steps = int(extractor.component_config("scheduler").get("num_train_timesteps", 1000))
        return {**super().provenance(extractor), "boundary_ratio": ratio, "boundary_timestep": ratio * steps,
                "experts": {"transformer": "high noise: timestep >= boundary_timestep",
                            "transformer_2": "low noise: timestep < boundary_timestep"}}

    @classmethod
    def timestep_attributes(cls, extractor: DiffusionVideoExtractor, level: NoiseLevel) -> dict[str, Any]:
        return {"expert": cls.denoiser(level, extractor.checkpoint.index)}


class Wan22I2V(Wan22T2V, WanI2V):
    """Wan2.2 I2V-A14B: two experts as T2V-A14B; conditioned on the clip's first frame only through the mask
    and condition latents of ``WanImageToVideoPipeline.prepare_latents`` (no image encoder, no CLIP embedding:
    the pipeline encodes an image only when the transformer has an ``image_dim``)."""

    family: ClassVar[str] = "wan2.2-i2v"
    description: ClassVar[str] = "Wan2.2 I2V-A14B image-to-video (first-frame latents + mask), two experts"
    pipeline: ClassVar[str] = "WanImageToVideoPipeline"
    components: ClassVar[tuple[str, ...]] = WanT2V.components  # no image_encoder / image_processor
    other_kinds: ClassVar[str] = "wan2.2-t2v, wan2.2-ti2v or Wan2.1"
    presets = {"Wan2.2-I2V-A14B": wan_preset("Wan-AI/Wan2.2-I2V-A14B-Diffusers", "wan2.2-i2v", 40, 5120)}
    tiny_models = {"tiny-wan2.2-i2v": WAN22_TINY["tiny-wan2.2-i2v"]}

    @classmethod
    def latent_channels(cls, vae: dict[str, Any]) -> int:
        """Noisy latents, the first-frame mask (one channel per frame a latent frame spans), condition latents."""
        return 2 * int(vae.get("z_dim", 16)) + cls.vae_compression(vae)[0]

    @classmethod
    def check_pipeline(cls, extractor: DiffusionVideoExtractor) -> None:
        super().check_pipeline(extractor)
        image_dim = extractor.transformer_config.get("image_dim")
        if image_dim is not None:
            extractor.refuse_checkpoint(
                f"the transformer takes a CLIP image embedding (image_dim={image_dim}), which Wan2.2 "
                f"I2V-A14B has not (is it a Wan2.1 image-to-video checkpoint? use family wan-i2v)")

    @classmethod
    def load_conditioning(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        return {}  # no image encoder

    @classmethod
    def clip_conditioning(cls, extractor: DiffusionVideoExtractor, video: Any, frames: Any,
                          latents: Any = None) -> dict[str, Any]:
        # The pipeline's own prepare_latents (the first frame's VAE mode, as the pipeline takes it), on a
        # pipeline holding only the VAE; its config defaults (expand_timesteps False) are the checkpoint's.
        _, condition = cls.prepare_condition(extractor, cls.light_pipeline(vae=extractor.vae), video)
        return {"condition": condition.to(extractor.dtype)}


# --- extractors ----------------------------------------------------------------------------------------

class Wan22T2VExtractor(DiffusionVideoExtractor):
    family_spec = Wan22T2V


class Wan22I2VExtractor(DiffusionVideoExtractor):
    family_spec = Wan22I2V


class Wan22TI2VExtractor(DiffusionVideoExtractor):
    family_spec = Wan22TI2V


EXTRACTORS = (Wan22T2VExtractor, Wan22I2VExtractor, Wan22TI2VExtractor)
