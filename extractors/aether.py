"""Aether (AetherV1, a geometry-aware world model post-trained from CogVideoX-5b-I2V) as a feature source.

What the public code says (OpenRobotLab/Aether, ``aether/pipelines/aetherv1_pipeline_cogvideox.py`` and
``scripts/demo.py``; the hub repo ``AetherWorldModel/AetherV1`` holds only ``transformer/``, no
``model_index.json``):

- ``scripts/demo.py`` ``build_pipeline`` loads the transformer from AetherV1 (``CogVideoXTransformer3DModel``,
  ``subfolder="transformer"``) and tokenizer, T5 text encoder, VAE and scheduler (as
  ``CogVideoXDPMScheduler``) from ``THUDM/CogVideoX-5b-I2V``. Here the model's ``checkpoint`` gives the
  transformer and option ``parts_checkpoint`` the rest (``null``: the model's own checkpoint, as a tiny
  pipeline directory holds everything).
- ``AetherV1PipelineCogVideoX.prepare_latents`` builds two tensors (B, F, C, H, W): the noisy target, 56 =
  color latents (16) + disparity latents (16) + raymap (24 = 6 ray channels x 4 frames per latent frame),
  started from pure noise; and the condition, 40 = the observation's latents (16) + camera raymap (24).
  ``__call__`` feeds ``torch.cat([latent_model_input, latent_condition], dim=2)`` (96 channels in; the
  transformer predicts the 56 target channels), the empty prompt (``max_sequence_length`` 226), the
  scheduler's integer timestep, the rotary embeddings of its own ``_prepare_rotary_positional_embeddings``
  (diffusers' CogVideoX one with time positions scaled by ``12 / fps``) and no ``ofs``.
- Tasks differ only in the condition: **reconstruction** (a video) puts the whole clip's latents in the
  observation channels; prediction puts the first frame's latents and zeros; planning first and goal
  frames. The camera channels are zero unless a raymap action is given. ``check_inputs`` takes 17, 25, 33 or
  41 frames and fps 8, 10, 12, 15 or 24; the demo runs 41 frames at 480x720, fps 12 (the pipeline default).

Feature extraction of a clip uses the **4D reconstruction** conditioning, built as ``prepare_latents`` does
(observation = the clip's VAE latents, scaled as the pipeline scales them; camera = zeros), except that
the VAE posterior mean is taken instead of a sample, as everywhere in the recipe. All 56 target channels
are noised with the scheduler's ``add_noise`` at the configured timestep, as training noises its targets;
their clean values are the clip's own color latents (reconstruction reproduces the observed video) and,
for disparity and raymap, which the clip does not give, zeros (those channels then hold only the noise term
of that level, not the pure noise of the pipeline's first step, which belongs to timestep 999). One transformer
forward at that timestep follows; blocks return ``(video_tokens, text_tokens)`` and the video tokens are
kept. The paper's probe (zxhuang1698/VidFM3D ``features/aether/aether_feature.py``) differs: it first runs
the 4-step reconstruction to get geometry latents, then noises [color, geometry] and conditions on the
first frame (prediction) by default, at fps 8.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from extractors.base import OptionError
from extractors.checkpoints import CheckpointFiles
from extractors.cogvideox import COGVIDEOX_OPTIONS, COGVIDEOX_TINY, CogVideoXI2V, CogVideoXT2V
from extractors.diffusion import Checkpoint, CheckpointError, DiffusionVideoExtractor
from extractors.presets import Preset

PARTS_CHECKPOINT = "THUDM/CogVideoX-5b-I2V"  # tokenizer, text encoder, VAE and scheduler of scripts/demo.py
AETHER_FRAMES = (17, 25, 33, 41)  # AetherV1PipelineCogVideoX.check_inputs
AETHER_FPS = (8, 10, 12, 15, 24)
BASE_FPS = 12  # AetherV1PipelineCogVideoX._base_fps: rotary time positions are scaled by BASE_FPS / fps
RAY_CHANNELS = 6  # per pixel and frame: ray origin and direction; temporal_compression frames per latent frame


def channel_layout(latent_channels: int, temporal_compression: int) -> dict[str, slice]:
    """Channel ranges of the transformer input as ``prepare_latents`` and ``__call__`` concatenate them:
    noisy target [color, disparity, raymap], then condition [observation, camera]."""
    widths = {"color": latent_channels, "disparity": latent_channels,
              "raymap": RAY_CHANNELS * temporal_compression, "observation": latent_channels,
              "camera": RAY_CHANNELS * temporal_compression}
    layout, start = {}, 0
    for name, width in widths.items():
        layout[name] = slice(start, start + width)
        start += width
    return layout


# --- tiny random-init model (built by extractors.tiny_models.build_tiny_model) -------------------------

_I2V = COGVIDEOX_TINY["tiny-cogvideox-i2v"]
AETHER_TINY: dict[str, dict[str, Any]] = {
    # A CogVideoXImageToVideoPipeline directory (the class Aether's pipeline extends) whose transformer has
    # Aether's layout: the VAE makes 16 latent channels as the real one (Aether hard-codes 56 = 16+16+24),
    # so 96 channels in, 56 out; rotary + learned positional embeddings sized for 49 frames at 64x64, as
    # CogVideoX-5b-I2V's are for 49 frames at 480x720.
    "tiny-aether": {
        "pipeline": "CogVideoXImageToVideoPipeline",
        "transformer": ("CogVideoXTransformer3DModel", {
            **_I2V["transformer"][1], "in_channels": 96, "out_channels": 56, "sample_frames": 49}),
        "vae": (_I2V["vae"][0], {**_I2V["vae"][1], "latent_channels": 16}),
        "scheduler": _I2V["scheduler"], "text_encoder": _I2V["text_encoder"],
    },
}

AETHER_OPTIONS = {**COGVIDEOX_OPTIONS, "frames": 41, "resolution": [480, 720], "max_text_tokens": 226,
                  "fps": BASE_FPS, "parts_checkpoint": PARTS_CHECKPOINT}


# --- checkpoints ---------------------------------------------------------------------------------------

class AetherCheckpoint(Checkpoint):
    """The model checkpoint: a diffusers pipeline directory, or (as ``AetherWorldModel/AetherV1``) a
    ``transformer/`` folder without ``model_index.json``, whose class its config names."""

    def __init__(self, location: str) -> None:
        CheckpointFiles.__init__(self, location)
        index = self.optional_json("model_index.json")
        self.transformer_only = index is None
        if index is None:
            try:
                config = self.read_json("transformer/config.json")
            except CheckpointError as err:
                raise CheckpointError(f"{err}; nor has it model_index.json: an Aether checkpoint is a transformer/ "
                                      f"folder (AetherWorldModel/AetherV1) or a diffusers pipeline") from None
            index = {"_class_name": "transformer only",
                     "transformer": ["diffusers", config.get("_class_name", "CogVideoXTransformer3DModel")]}
        self.index = index
        self.components = {name: spec for name, spec in index.items()
                           if not name.startswith("_") and isinstance(spec, list) and spec[0] is not None}


class PartsCheckpoint(Checkpoint):
    """Where tokenizer, text encoder, VAE and scheduler come from; its errors name option parts_checkpoint.
    The scheduler loads as ``CogVideoXDPMScheduler``, the class Aether's ``build_pipeline`` uses (the same
    ``alphas_cumprod`` as the folder's CogVideoXDDIMScheduler)."""

    def __init__(self, location: str) -> None:
        try:
            super().__init__(location)
        except CheckpointError as err:
            raise CheckpointError(f"parts_checkpoint: {err}") from None

    def require(self, names: tuple[str, ...]) -> None:
        try:
            super().require(names)
        except CheckpointError as err:
            raise CheckpointError(f"parts_checkpoint: {err}") from None

    def load(self, component: str, **kwargs: Any) -> Any:
        if component != "scheduler":
            return super().load(component, **kwargs)
        from diffusers import CogVideoXDPMScheduler

        self.require((component,))
        self.require_written()
        return CogVideoXDPMScheduler.from_pretrained(self.location, subfolder=component, **kwargs)


# --- family --------------------------------------------------------------------------------------------

class Aether(CogVideoXI2V):
    """AetherV1: CogVideoX-5b-I2V's transformer post-trained to denoise color, disparity and raymap latents,
    here conditioned for 4D reconstruction of the clip (the module docstring says how and why)."""

    family: ClassVar[str] = "aether"
    description: ClassVar[str] = ("AetherV1 geometry-aware world model (CogVideoXTransformer3DModel), 4D "
                                  "reconstruction conditioning")
    default_options = AETHER_OPTIONS
    presets = {"AetherV1": Preset("aether", "AetherWorldModel/AetherV1", 42, 3072, (18, 20), timestep=250,
                                  options={"frames": 41, "resolution": [480, 720], "max_text_tokens": 226,
                                           "fps": BASE_FPS, "parts_checkpoint": PARTS_CHECKPOINT})}
    tiny_models = AETHER_TINY

    @classmethod
    def open_checkpoint(cls, location: str) -> Checkpoint:
        return AetherCheckpoint(location)

    @classmethod
    def component_checkpoint(cls, extractor: DiffusionVideoExtractor, component: str) -> Checkpoint:
        """The transformer from the model's checkpoint, everything else from ``parts_checkpoint``."""
        return extractor.checkpoint if component == "transformer" else cls.parts(extractor)

    @staticmethod
    def parts(extractor: DiffusionVideoExtractor) -> Checkpoint:
        """The parts checkpoint, opened once per extractor."""
        parts = extractor.__dict__.get("_aether_parts")
        if parts is None:
            location = extractor.options["parts_checkpoint"]
            if location is not None and (not isinstance(location, str) or not location):
                raise OptionError(f"model {extractor.name!r}: option parts_checkpoint={location!r} must be a "
                                  f"checkpoint location (e.g. {PARTS_CHECKPOINT!r}) or null (the model's own)")
            if location is None and getattr(extractor.checkpoint, "transformer_only", False):
                raise CheckpointError(f"checkpoint {extractor.checkpoint.location!r} holds only transformer/ (no "
                                      f"model_index.json); Aether takes tokenizer, text encoder, VAE and scheduler "
                                      f"from option parts_checkpoint (e.g. {PARTS_CHECKPOINT!r})")
            parts = PartsCheckpoint(location or extractor.checkpoint.location)
            extractor.__dict__["_aether_parts"] = parts
        return parts

    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        return {"aether_task": "reconstruction", "aether_geometry_x0": "zeros",
                "parts_checkpoint": cls.parts(extractor).location}

    @classmethod
    def check_frames(cls, model: str, frames: int) -> None:
        if frames not in AETHER_FRAMES:
            raise OptionError(f"model {model!r}: frames={frames}; Aether's pipeline takes {list(AETHER_FRAMES)} "
                              f"frames")

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """What the configs must say for the pipeline to run as Aether's does (no weights loaded)."""
        model, options = extractor.name, extractor.options
        if options["fps"] not in AETHER_FPS:
            raise OptionError(f"model {model!r}: fps={options['fps']!r}; Aether's pipeline takes {list(AETHER_FPS)}")
        transformer, vae = extractor.component_config("transformer"), extractor.component_config("vae")
        extractor.component_config("text_encoder")  # a missing folder fails here, not after loading it

        fail = extractor.refuse_checkpoint

        if transformer.get("_class_name", "CogVideoXTransformer3DModel") != "CogVideoXTransformer3DModel":
            fail(f"the transformer is a {transformer['_class_name']}; Aether's is a CogVideoXTransformer3DModel")
        temporal, spatial = cls.vae_compression(vae)
        if temporal != cls.temporal_compression:
            fail(f"the VAE compresses time x{temporal}; Aether's pipeline expects x{cls.temporal_compression}")
        if transformer.get("patch_size_t") is not None:
            fail(f"patch_size_t={transformer['patch_size_t']} (CogVideoX 1.5) is not supported")
        if spatial * cls.patch_size(transformer)[1] != cls.spatial_multiple:
            fail(f"VAE x patch downsampling is {spatial * cls.patch_size(transformer)[1]}; expected "
                 f"{cls.spatial_multiple}")
        cls.check_channels(transformer, int(vae.get("latent_channels", 16)), temporal, fail)
        cls.check_positions(transformer, options, fail)

    @staticmethod
    def check_channels(transformer: dict[str, Any], latent: int, temporal: int, fail: Any) -> None:
        layout = channel_layout(latent, temporal)
        needed_in, needed_out = layout["camera"].stop, layout["raymap"].stop
        found = (int(transformer.get("in_channels", 16)), int(transformer.get("out_channels", 16)))
        if found != (needed_in, needed_out):
            fail(f"the transformer takes {found[0]} input and makes {found[1]} output channels; Aether's layout "
                 f"for {latent} VAE latent channels is {needed_in} in (color, disparity, raymap, observation, "
                 f"camera) and {needed_out} out (is it a cogvideox-i2v or cogvideox-t2v checkpoint?)")

    @staticmethod
    def check_positions(transformer: dict[str, Any], options: dict[str, Any], fail: Any) -> None:
        """Positional tables: a learned one exists for the sample resolution only (diffusers refuses others;
        another frame count gets sin-cos, as Aether's pipeline runs 41 frames); either table is laid out
        for ``max_text_seq_length`` text tokens."""
        rotary = bool(transformer.get("use_rotary_positional_embeddings", False))
        learned = bool(transformer.get("use_learned_positional_embeddings", False))
        if not rotary or learned:
            text = int(transformer.get("max_text_seq_length", 226))
            if options["max_text_tokens"] != text:
                fail(f"max_text_tokens={options['max_text_tokens']}, but this transformer's positional table is laid "
                     f"out for max_text_seq_length={text} text tokens; set max_text_tokens: {text}")
        if learned:
            size = [8 * int(transformer.get("sample_height", 60)), 8 * int(transformer.get("sample_width", 90))]
            if list(options["resolution"]) != size:
                fail(f"learned positional embeddings fix the resolution to {size[0]}x{size[1]}; got "
                     f"resolution={list(options['resolution'])}")

    # --- per clip -----------------------------------------------------------------------------------------
    @staticmethod
    def video_latents(vae: Any, video: Any) -> Any:
        """The clip's latents (B, F, C, H, W) as ``prepare_latents`` encodes a video (posterior mean here, a
        sample there), scaled as it scales them."""
        latents = vae.encode(video).latent_dist.mode().permute(0, 2, 1, 3, 4)
        if not vae.config.get("invert_scale_latents", False):
            return vae.config.scaling_factor * latents
        return 1 / vae.config.scaling_factor * latents

    @staticmethod
    def zero_channels(latents: Any, channels: int) -> Any:
        return latents.new_zeros((*latents.shape[:2], channels, *latents.shape[3:]))

    @classmethod
    def encode_video(cls, extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Clean target [color = the clip's latents, disparity = 0, raymap = 0]; :meth:`clip_conditioning` takes
        the colour part from it (one VAE encoding per clip)."""
        import torch

        latents = cls.video_latents(extractor.vae, video)
        layout = channel_layout(latents.shape[2], cls.temporal_compression)
        geometry = layout["raymap"].stop - layout["disparity"].start
        return torch.cat([latents, cls.zero_channels(latents, geometry)], dim=2)

    @classmethod
    def clip_conditioning(cls, extractor: DiffusionVideoExtractor, video: Any, frames: np.ndarray,
                          latents: Any = None) -> dict[str, Any]:
        """Reconstruction's condition: [observation = the clip's latents, camera = zeros] (no raymap given).
        ``latents`` (the clean target of :meth:`encode_video`) start with the clip's colour latents."""
        import torch

        if latents is None:
            latents = cls.video_latents(extractor.vae, video)
        else:
            latents = latents[:, :, :extractor.vae.config.latent_channels]  # the colour part of the target
        camera = channel_layout(latents.shape[2], cls.temporal_compression)["camera"]
        condition = torch.cat([latents, cls.zero_channels(latents, camera.stop - camera.start)], dim=2)
        return {"condition": condition.to(extractor.dtype)}

    @classmethod
    def rotary_embeddings(cls, extractor: DiffusionVideoExtractor, latent_shape: tuple[int, ...]) -> Any:
        """Aether's ``_prepare_rotary_positional_embeddings``: diffusers' CogVideoX one (equal at fps 12) with
        the temporal columns recomputed at positions x ``BASE_FPS / fps``."""
        _, frames, _, height, width = latent_shape
        cache = extractor.conditioning["rotary"]
        key = ("aether", frames, height, width)
        if key not in cache:
            cos, sin = CogVideoXT2V.rotary_embeddings(extractor, latent_shape)
            factor = BASE_FPS / extractor.options["fps"]
            if factor != 1.0:
                head_dim = extractor.transformer.config.attention_head_dim
                cos, sin = scale_rotary_time(cos, sin, frames, head_dim, factor)
            cache[key] = (cos, sin)
        return cache[key]


def scale_rotary_time(cos: Any, sin: Any, frames: int, head_dim: int, factor: float) -> tuple[Any, Any]:
    """(cos, sin) with the temporal columns (the first ``head_dim // 4``, as ``get_3d_rotary_pos_embed``
    lays them out) at time positions x ``factor``, as Aether's ``get_3d_rotary_pos_embed(fps_factor=...)``."""
    import torch
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    dim_t = head_dim // 4
    grid_t = torch.linspace(0, frames * (frames - 1) / frames, frames, dtype=torch.float32) * factor
    t_cos, t_sin = get_1d_rotary_pos_embed(dim_t, grid_t, use_real=True)

    def replace(table: Any, temporal: Any) -> Any:
        table = table.clone().view(frames, -1, table.shape[-1])
        table[..., :dim_t] = temporal.to(table)[:, None]
        return table.view(-1, table.shape[-1])

    return replace(cos, t_cos), replace(sin, t_sin)


# --- extractor -----------------------------------------------------------------------------------------

class AetherExtractor(DiffusionVideoExtractor):
    family_spec = Aether


EXTRACTORS = (AetherExtractor,)
