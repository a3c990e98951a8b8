"""Video diffusion transformers (diffusers) as frozen feature sources: one denoiser pass, no sampling.

The recipe is the same for every family; what differs is declared by the family's :class:`VideoFamily`
subclass (the contract, docs/sources.md#video-families), next to its presets and tiny test models:

1. frames -> the model's frame count and resolution, scaled to [-1, 1];
2. VAE posterior **mean**, normalised as the family's pipeline does (:meth:`VideoFamily.encode_video`);
3. noise at the requested timestep with the scheduler's formula (:meth:`VideoFamily.noise_level`), drawn from
   a generator seeded by the config seed, the clip index and the timestep (optionally K draws, averaged);
4. the empty prompt, encoded once per job by the family's text encoders (any number), which are then
   released (:meth:`VideoFamily.encode_prompt`);
5. one transformer forward per (clip, timestep, draw) (:meth:`VideoFamily.forward`) that captures every
   requested block output (and attention q/k/v, :mod:`extractors.captures`) and stops after the deepest
   block; video tokens -> (T', h, w, C), text tokens dropped.

``timestep`` is the value fed to the denoiser (0 = clean) unless a family documents otherwise: sigma =
t / N for flow-matching schedulers, alpha_bar = alphas_cumprod[t] for DDPM-style ones. Heavy libraries are
imported in ``load``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import numpy as np

from extractors.base import ClipFeatures, Extractor, OptionError
from extractors.captures import OUTPUT, FeatureKey, parse_token
from extractors.checkpoints import CheckpointError, CheckpointFiles, choose_device, open_model_checkpoint
from extractors.hooks import StopForward, capture_modules, first_output, run_until_deepest

__all__ = ["CheckpointError", "StopForward", "run_until_deepest", "Checkpoint", "DiffusionVideoExtractor",
           "VideoFamily", "NoiseLevel", "noise_level", "causal_frame_index"]


class Checkpoint(CheckpointFiles):
    """A diffusers pipeline checkpoint: a local directory (or a hub id already in the local cache).

    Components are loaded one at a time from the classes ``model_index.json`` names, so a job can free the
    text encoder before loading the transformer.
    """

    def __init__(self, location: str) -> None:
        super().__init__(location)
        index = self.read_json("model_index.json")
        self.index = index  # the pipeline's own config too (e.g. Wan2.2's boundary_ratio)
        self.components = {name: spec for name, spec in index.items()
                           if not name.startswith("_") and isinstance(spec, list) and spec[0] is not None}

    def require(self, names: tuple[str, ...]) -> None:
        missing = [n for n in names if n not in self.components]
        if missing:
            raise CheckpointError(f"checkpoint {self.location!r} lacks component(s) {missing}; "
                                  f"model_index.json lists {sorted(self.components)}")
        absent = [n for n in names if self.path.exists() and not (self.path / n).is_dir()]
        if absent:
            raise CheckpointError(f"checkpoint {self.location!r} lacks the folder(s) {[f'{n}/' for n in absent]}")

    def config(self, component: str) -> dict[str, Any]:
        """A component's config (``config.json``, or ``scheduler_config.json`` for schedulers), read
        without importing its library."""
        self.require((component,))
        name = "scheduler_config.json" if component == "scheduler" else "config.json"
        return self.read_json(f"{component}/{name}")

    def load(self, component: str, **kwargs: Any) -> Any:
        """Load one component with ``from_pretrained`` through the class ``model_index.json`` names."""
        import importlib

        self.require((component,))
        self.require_written()
        library, class_name = self.components[component]
        cls = getattr(importlib.import_module(library), class_name)
        return cls.from_pretrained(self.location, subfolder=component, **kwargs)



@dataclass(frozen=True)
class NoiseLevel:
    """How much noise a timestep means, in the scheduler's own terms.

    ``timestep`` is the configured value; ``model_timestep`` what the transformer is given (the same, unless a
    family's pipeline feeds another value, e.g. a reversed scale)."""

    kind: str  # "flow" (x_t = (1 - sigma) x0 + sigma eps) or "ddpm" (sqrt(abar) x0 + sqrt(1 - abar) eps)
    timestep: int
    value: float  # sigma or alpha_bar
    model_timestep: float | None = None

    @property
    def fed(self) -> float:
        """The timestep value the transformer receives."""
        return float(self.timestep if self.model_timestep is None else self.model_timestep)

    def apply(self, x0: Any, noise: Any) -> Any:
        if self.kind == "flow":
            return (1.0 - self.value) * x0 + self.value * noise
        return self.value ** 0.5 * x0 + (1.0 - self.value) ** 0.5 * noise

    def attributes(self) -> dict[str, float]:
        return {"sigma": self.value} if self.kind == "flow" else {"alpha_bar": self.value}


def schedule_kind(class_name: str, config: dict[str, Any]) -> str:
    """``flow`` (FlowMatch schedulers, or UniPC with flow sigmas) or ``ddpm`` (alphas_cumprod schedules)."""
    return "flow" if "FlowMatch" in class_name or config.get("use_flow_sigmas", False) else "ddpm"


def check_timestep(class_name: str, config: dict[str, Any], timestep: int) -> str:
    """Raise a precise error when ``timestep`` is outside what the scheduler represents; return its kind."""
    kind = schedule_kind(class_name, config)
    steps = int(config.get("num_train_timesteps", 1000))
    if kind == "flow" and not 0 <= timestep <= steps:
        raise ValueError(f"timestep {timestep} is outside {class_name}'s range 0..{steps} (sigma = timestep/{steps})")
    if kind == "ddpm" and not 0 <= timestep < steps:
        raise ValueError(f"timestep {timestep} is outside {class_name}'s range 0..{steps - 1}")
    return kind


def noise_level(scheduler: Any, timestep: int) -> NoiseLevel:
    """The noise level of ``timestep`` (the denoiser's input) under ``scheduler``, or a precise error."""
    config = dict(scheduler.config)
    if check_timestep(type(scheduler).__name__, config, timestep) == "flow":
        return NoiseLevel("flow", timestep, timestep / int(config["num_train_timesteps"]))
    return NoiseLevel("ddpm", timestep, float(scheduler.alphas_cumprod[timestep]))


def pipeline_class(name: str) -> Any:
    """A diffusers pipeline class by name (families use their pipeline's own prompt and image encoding)."""
    import importlib

    return getattr(importlib.import_module("diffusers"), name)


def causal_frame_index(latent_frames: int, compression: int) -> np.ndarray:
    """Latent 0 encodes frame 0 alone; latent k+1 starts at frame compression*k + 1 (causal video VAEs)."""
    return np.asarray([0] + [compression * k + 1 for k in range(latent_frames - 1)], dtype=np.int64)


DEFAULT_OPTIONS: dict[str, Any] = {
    "frames": 81,  # frames fed to the model (the clip's first ones); a count the VAE takes (4k+1 for most)
    "resolution": [480, 832],  # model input [height, width]
    "noise_draws": 1,  # K noise draws per (clip, timestep), features averaged
    "max_text_tokens": 512,
    "random_init": False,  # True for the tiny demo models: labels their sources everywhere
    "vae_tiling": False,  # tiled VAE encoding for large frames
    "context_frames": None,  # keep only feature frames starting before this clip frame (paper: 76)
    "device": "auto",  # auto = CUDA when present (bf16), else CPU (float32)
}


class VideoFamily:
    """The contract of a video diffusion family: what the recipe of :class:`DiffusionVideoExtractor` asks.

    A family is a subclass that sets the facts below and overrides the methods whose defaults do not fit
    (each default says which pipeline behaviour it follows). The extractor reads nothing else. Methods are
    class methods taking the extractor (``extractor.options``, ``.device``, ``.dtype``, ``.vae``,
    ``.scheduler``, ``.prompt``, ``.conditioning``) so that a family holds no state.
    """

    # --- facts ----------------------------------------------------------------------------------------
    family: ClassVar[str]  # the config's ``family:`` value
    description: ClassVar[str] = ""  # one line for the docs' model table
    timestep_meaning: ClassVar[str] = "value fed to the denoiser (0 = clean)"
    pipeline: ClassVar[str]  # the diffusers pipeline whose helper methods the family reuses
    components: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")
    prompt_components: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder")  # loaded for the prompt, freed
    transformers: ClassVar[tuple[str, ...]] = ("transformer",)  # denoiser components (Wan2.2 A14B: two experts)
    block_lists: ClassVar[tuple[str, ...]] = ("blocks",)  # transformer attributes, numbered in this order
    block_count_keys: ClassVar[tuple[str, ...]] = ("num_layers",)  # transformer config key of each list's length
    attention: ClassVar[str] = "attn1"  # a block's self-attention attribute
    temporal_compression: ClassVar[int] = 4  # the VAE takes temporal_compression*k + 1 frames
    spatial_multiple: ClassVar[int] = 16  # VAE x patch spatial downsampling: resolution must be a multiple
    default_options: ClassVar[Mapping[str, Any]] = DEFAULT_OPTIONS
    presets: ClassVar[Mapping[str, Any]] = {}  # preset name -> extractors.presets.Preset
    tiny_models: ClassVar[Mapping[str, dict[str, Any]]] = {}  # tiny random-init pipelines (extractors.tiny_models)

    # --- from configs alone (planning: no weights, no torch) ---------------------------------------------
    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """(temporal, spatial) downsampling of the VAE, from its config."""
        raise NotImplementedError

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        """(time, height, width) latent cells per transformer token, from its config."""
        raise NotImplementedError

    @classmethod
    def num_blocks(cls, transformer: dict[str, Any]) -> int:
        """Selectable layers: the lengths of :attr:`block_lists`, from :attr:`block_count_keys`."""
        return sum(int(transformer[key]) for key in cls.block_count_keys)

    @staticmethod
    def attention_heads(transformer: dict[str, Any]) -> tuple[int, int]:
        """(heads, head_dim) of the blocks' self-attention."""
        return int(transformer["num_attention_heads"]), int(transformer["attention_head_dim"])

    @classmethod
    def channels(cls, transformer: dict[str, Any]) -> int:
        """Channels of a block's output tokens."""
        heads, head_dim = cls.attention_heads(transformer)
        return heads * head_dim

    @classmethod
    def check_frames(cls, model: str, frames: int) -> None:
        if (frames - 1) % cls.temporal_compression:
            k = cls.temporal_compression
            raise OptionError(f"model {model!r}: frames={frames}; this VAE takes {k}k+1 frames "
                              f"(e.g. {2 * k + 1}, {4 * k + 1}, {6 * k + 1})")

    @classmethod
    def check_checkpoint(cls, extractor: DiffusionVideoExtractor) -> None:
        """Raise :class:`OptionError` when the checkpoint's configs cannot serve this family as its pipeline
        would (no weights loaded). The default checks the VAE's temporal compression."""
        temporal, _ = cls.vae_compression(extractor.component_config("vae"))
        if temporal != cls.temporal_compression:
            extractor.refuse_checkpoint(f"the VAE compresses time x{temporal}; this family expects "
                                        f"x{cls.temporal_compression}")

    @classmethod
    def open_checkpoint(cls, location: str) -> Checkpoint:
        """The model's checkpoint (default: a diffusers pipeline directory with ``model_index.json``)."""
        return Checkpoint(location)

    @classmethod
    def component_checkpoint(cls, extractor: DiffusionVideoExtractor, component: str) -> Checkpoint:
        """The checkpoint ``component`` loads from: the model's own (Aether borrows parts of another)."""
        return extractor.checkpoint

    @classmethod
    def provenance(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        """Family facts recorded on every store (e.g. Wan2.2's expert boundary)."""
        return {}

    @classmethod
    def timestep_attributes(cls, extractor: DiffusionVideoExtractor, level: NoiseLevel) -> dict[str, Any]:
        """Facts of one timestep recorded on its store, besides sigma or alpha_bar (e.g. which expert ran)."""
        return {}

    # --- loading and per-clip inputs ------------------------------------------------------------------
    @classmethod
    def light_pipeline(cls, **parts: Any) -> Any:
        """The family's diffusers pipeline holding only ``parts``, to call its own helper methods."""
        return pipeline_class(cls.pipeline)(**{**dict.fromkeys(cls.components), **parts})

    @classmethod
    def encode_prompt(cls, extractor: DiffusionVideoExtractor, parts: dict[str, Any]) -> dict[str, Any]:
        """The empty prompt as the transformer's keyword arguments, from the loaded :attr:`prompt_components`.

        Default: the pipeline's own ``encode_prompt`` without classifier-free guidance; its first value is
        ``encoder_hidden_states``. Families whose pipelines also pass masks or pooled embeddings return them
        under the transformer's argument names."""
        pipe = cls.light_pipeline(**parts)
        embeds = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                    max_sequence_length=extractor.options["max_text_tokens"],
                                    device=extractor.device)[0]
        return {"encoder_hidden_states": embeds}

    @staticmethod
    def encode_video(extractor: DiffusionVideoExtractor, video: Any) -> Any:
        """Clean latents of ``video`` (1, 3, F, H, W) in [-1, 1]: the VAE posterior mean, normalised and laid
        out as the family's pipeline holds latents."""
        raise NotImplementedError

    @classmethod
    def load_conditioning(cls, extractor: DiffusionVideoExtractor) -> dict[str, Any]:
        """Models or caches needed for per-clip conditioning, loaded once per job (none by default)."""
        return {}

    @classmethod
    def clip_conditioning(cls, extractor: DiffusionVideoExtractor, video: Any, frames: np.ndarray,
                          latents: Any = None) -> dict[str, Any]:
        """Per-clip inputs besides the noisy latents (image-to-video conditioning), once per clip. ``latents``
        are the clip's clean latents as :meth:`encode_video` made them (None when the caller has none)."""
        return {}

    @classmethod
    def noise_level(cls, extractor: DiffusionVideoExtractor, timestep: int, latents: Any) -> NoiseLevel:
        """What ``timestep`` means for this clip's ``latents`` under the scheduler (default: its own formula)."""
        return noise_level(extractor.scheduler, timestep)

    @classmethod
    def denoiser(cls, level: NoiseLevel, configs: Mapping[str, Any]) -> str:
        """Which of :attr:`transformers` denoises at ``level`` (``configs``: the pipeline's model_index.json)."""
        return cls.transformers[0]

    @classmethod
    def forward(cls, extractor: DiffusionVideoExtractor, transformer: Any, noisy: Any, level: NoiseLevel,
                clip_inputs: dict[str, Any]) -> Any:
        """The pipeline's transformer call for one denoising step at ``level`` (``level.fed``)."""
        raise NotImplementedError

    # --- reading blocks ---------------------------------------------------------------------------------
    @classmethod
    def blocks(cls, transformer: Any) -> list[tuple[str, Any]]:
        """Capturable blocks in layer order, each with its list's name: :attr:`block_lists` concatenated."""
        return [(name, block) for name in cls.block_lists for block in getattr(transformer, name)]

    @classmethod
    def block_tokens(cls, extractor: DiffusionVideoExtractor, output: Any, block_list: str) -> Any:
        """Video tokens (B, N, D) of a block's output, in the raster order of :meth:`latent_grid`; text tokens
        dropped. Default: the output, or the first element of an output tuple."""
        return first_output(output)

    @classmethod
    def attention_projection(cls, block: Any, kind: str) -> Any:
        """The module whose output is ``kind`` (attn_q/k/v) of a block's self-attention: q and k after the
        model's q/k norm when it has one, v after its projection."""
        attention = getattr(block, cls.attention)
        letter = kind[-1]
        norm = getattr(attention, f"norm_{letter}", None) if letter in "qk" else None
        return norm if norm is not None else getattr(attention, f"to_{letter}")

    @classmethod
    def attention_tokens(cls, extractor: DiffusionVideoExtractor, value: Any, block_list: str) -> Any:
        """(B, N, heads*head_dim) video tokens of a projection's output, heads concatenated in head order.
        Default: the output holds only video tokens as (B, N, H*D) or (B, N, H, D)."""
        return value.flatten(2) if value.dim() == 4 else value

    @staticmethod
    def latent_grid(latent_shape: tuple[int, ...], config: Any) -> tuple[int, int, int]:
        """(T', h, w) token grid of latents of ``latent_shape`` (B, C, F, H, W by default)."""
        p_t, p_h, p_w = config.patch_size
        _, _, frames, height, width = latent_shape
        return frames // p_t, height // p_h, width // p_w

    @classmethod
    def frame_index(cls, latent_frames: int) -> np.ndarray:
        """The clip frame each latent frame starts at (causal video VAEs: 0, 1, 1+k, 1+2k, ...)."""
        return causal_frame_index(latent_frames, cls.temporal_compression)


class DiffusionVideoExtractor(Extractor):
    """The common recipe. A family's extractor is a subclass naming its :class:`VideoFamily` in
    ``family_spec``; its family name, options, presets and tiny models come from there."""

    paradigm = "vgm"
    uses_timestep = True
    takes_checkpoint = True
    captures_attention = True
    family_spec: ClassVar[type[VideoFamily]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("family_spec")
        if spec is not None:
            cls.family, cls.default_options = spec.family, spec.default_options
            cls.presets, cls.tiny_models = spec.presets, spec.tiny_models

    def __init__(self, name: str, options: dict[str, Any], *, seed: int = 0, checkpoint: str | None = None,
                 captures: tuple[str, ...] = (OUTPUT,)) -> None:
        self.checkpoint = open_model_checkpoint(name, self.family, checkpoint, self.family_spec.open_checkpoint,
                                                "diffusers pipeline")
        super().__init__(name, options, seed=seed, checkpoint=checkpoint, captures=captures)

    def validate_options(self) -> None:
        for key in ("frames", "noise_draws", "max_text_tokens"):
            self.positive_int_option(key)
        if self.options["context_frames"] is not None:
            self.positive_int_option("context_frames")
        spec = self.family_spec
        spec.check_frames(self.name, self.options["frames"])
        height, width = self.options["resolution"]
        if height % spec.spatial_multiple or width % spec.spatial_multiple:
            raise OptionError(f"model {self.name!r}: resolution {height}x{width} must be a multiple of "
                              f"{spec.spatial_multiple}")
        try:
            for component in spec.components:
                spec.component_checkpoint(self, component).require((component,))
        except CheckpointError as err:
            raise OptionError(f"model {self.name!r}: {err}") from None
        self.component_config("vae")
        self.component_config(spec.transformers[0])
        spec.check_checkpoint(self)

    def component_config(self, component: str) -> dict[str, Any]:
        """A component's config from the checkpoint it loads from (no weights, no torch); a missing or
        unreadable one is an :class:`OptionError` naming the model."""
        try:
            return self.family_spec.component_checkpoint(self, component).config(component)
        except CheckpointError as err:
            raise OptionError(f"model {self.name!r}: {err}") from None

    def refuse_checkpoint(self, message: str) -> NoReturn:
        """Refuse the checkpoint for ``message`` (what its configs say that this family cannot follow)."""
        raise OptionError(f"model {self.name!r} (checkpoint {self.checkpoint.location!r}): {message}")

    @property
    def transformer_config(self) -> dict[str, Any]:
        return self.component_config(self.family_spec.transformers[0])

    @property
    def random_init(self) -> bool:
        return bool(self.options["random_init"])

    def num_layers(self) -> int:
        return self.family_spec.num_blocks(self.transformer_config)

    def channels(self) -> int:
        return self.family_spec.channels(self.transformer_config)

    def attention_heads(self) -> int:
        return self.family_spec.attention_heads(self.transformer_config)[0]

    def feature_grid(self, height: int, width: int) -> tuple[int, int] | None:
        """Frames are resized to ``resolution``: one cell per VAE-compressed transformer patch of it."""
        _, spatial = self.family_spec.vae_compression(self.component_config("vae"))
        _, patch_h, patch_w = self.family_spec.patch_size(self.transformer_config)
        res_h, res_w = self.options["resolution"]
        return res_h // (spatial * patch_h), res_w // (spatial * patch_w)

    def check_timestep(self, timestep: int) -> None:
        config = self.component_config("scheduler")
        try:
            check_timestep(config.get("_class_name", "scheduler"), config, timestep)
        except ValueError as err:
            raise OptionError(f"model {self.name!r}: {err}") from None

    # --- loading ----------------------------------------------------------------------------------------
    def load_component(self, component: str, **kwargs: Any) -> Any:
        """One component through ``from_pretrained`` of the class its checkpoint's model_index.json names;
        models are moved to the job's device and dtype, in eval mode."""
        loaded = self.family_spec.component_checkpoint(self, component).load(component, **kwargs)
        if hasattr(loaded, "eval"):
            loaded = loaded.to(self.device).eval()
        return loaded

    def load(self) -> None:
        self.device, self.dtype = choose_device(self.options["device"], self.name)
        self.prompt = self._encode_empty_prompt()  # text encoders are freed before the big models load
        self.text = self.prompt.get("encoder_hidden_states")
        self.vae = self.load_component("vae", torch_dtype=self.dtype)
        if self.options["vae_tiling"]:
            self.vae.enable_tiling()
        self.scheduler = self.load_component("scheduler")
        self.denoisers: dict[str, Any] = {}
        self.conditioning = self.family_spec.load_conditioning(self)

    def denoiser(self, component: str) -> Any:
        """A denoiser component, loaded on first use (an expert no configured timestep needs never loads)."""
        if component not in self.denoisers:
            self.denoisers[component] = self.load_component(component, torch_dtype=self.dtype)
        return self.denoisers[component]

    def _denoiser_at(self, level: NoiseLevel) -> Any:
        return self.denoiser(self.family_spec.denoiser(level, self.checkpoint.index))

    @property
    def transformer(self) -> Any:
        """The first denoiser loaded, else :attr:`VideoFamily.transformers`' first (loaded now)."""
        if self.denoisers:
            return next(iter(self.denoisers.values()))
        return self.denoiser(self.family_spec.transformers[0])

    def _encode_empty_prompt(self) -> dict[str, Any]:
        import gc

        import torch

        parts = {}
        for component in self.family_spec.prompt_components:
            kwargs = {} if "tokenizer" in component else {"torch_dtype": self.dtype}
            parts[component] = self.load_component(component, **kwargs)
        with torch.inference_mode():
            prompt = self.family_spec.encode_prompt(self, parts)
        del parts
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return {key: value.to(self.dtype) if torch.is_tensor(value) and value.is_floating_point() else value
                for key, value in prompt.items()}

    # --- extraction -------------------------------------------------------------------------------------
    def input_frames(self, available: int, clip: int | None = None) -> int:
        """Frames fed for a clip of ``available`` frames: option ``frames``, or for a shorter clip its longest
        prefix the VAE takes, so nothing past the clip is ever fed. The store records each clip's feature
        frames (``frame_count``)."""
        for count in range(min(self.options["frames"], available), 0, -1):
            try:
                self.family_spec.check_frames(self.name, count)
            except OptionError:
                continue
            return count
        raise ValueError(f"model {self.name!r}: clip {clip} has {available} frames, too few for this VAE")

    def video_tensor(self, frames: np.ndarray, clip: int) -> Any:
        """(1, 3, F, H, W) in [-1, 1] at the model's resolution, from the clip's first :meth:`input_frames`."""
        import torch
        import torch.nn.functional as F

        count = self.input_frames(len(frames), clip)
        video = torch.from_numpy(np.ascontiguousarray(frames[:count])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        video = F.interpolate(video, size=tuple(self.options["resolution"]), mode="bilinear", align_corners=False,
                              antialias=True)
        return video.permute(1, 0, 2, 3)[None].to(self.device, self.dtype)

    def generator(self, clip: int, timestep: int) -> Any:
        import torch

        # Seeded from the config seed, the clip and the timestep: reproducible, independent per clip.
        seed = int(np.random.SeedSequence([self.seed, clip, timestep]).generate_state(1)[0])
        return torch.Generator(device="cpu").manual_seed(seed)

    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        return self.extract_timesteps(frames, layers, (timestep,), clip=clip)[timestep]

    def extract_timesteps(self, frames: np.ndarray, layers: tuple[int, ...], timesteps: tuple[int | None, ...], *,
                          clip: int = 0) -> dict[int | None, ClipFeatures]:
        """One VAE encoding and one conditioning per clip, then one noisy forward per timestep and draw."""
        import torch

        spec = self.family_spec
        keys = tuple((layer, capture) for layer in layers for capture in self.captures)
        with torch.inference_mode():
            video = self.video_tensor(frames, clip)
            latents = spec.encode_video(self, video)
            clip_inputs = spec.clip_conditioning(self, video, frames[: video.shape[2]], latents)
            levels = [spec.noise_level(self, int(timestep), latents) for timestep in timesteps]
            grid = spec.latent_grid(latents.shape, self._denoiser_at(levels[0]).config)  # experts share a config
            frame_index = spec.frame_index(grid[0])
            keep = self._in_context(frame_index)
            result = {}
            for timestep, level in zip(timesteps, levels):
                arrays = self._features_at(level, latents, keys, clip_inputs, clip, grid, keep)
                result[timestep] = ClipFeatures.from_arrays(arrays, frame_index[keep])
            return result

    def _features_at(self, level: NoiseLevel, latents: Any, keys: tuple[FeatureKey, ...],
                     clip_inputs: dict[str, Any], clip: int, grid: tuple[int, int, int],
                     keep: np.ndarray) -> dict[FeatureKey, np.ndarray]:
        """Captured tokens at one noise level, averaged over the noise draws, as (T', h, w, C) float32."""
        import torch

        generator = self.generator(clip, level.timestep)
        totals: dict[FeatureKey, Any] = {}
        for _ in range(self.options["noise_draws"]):
            noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents)
            noisy = level.apply(latents.float(), noise.float()).to(self.dtype)
            for key, tokens in self._forward(noisy, level, keys, clip_inputs).items():
                totals[key] = totals.get(key, 0) + tokens.float()
        draws = self.options["noise_draws"]
        return {key: (total / draws).reshape(*grid, -1)[keep].cpu().numpy() for key, total in totals.items()}

    def expected_frame_index(self, num_frames: int) -> np.ndarray | None:
        spec = self.family_spec
        try:
            count = self.input_frames(num_frames)
        except ValueError:
            return None  # extraction refuses such clips, naming them
        index = spec.frame_index((count - 1) // spec.temporal_compression + 1)
        return index[self._in_context(index)]

    def _in_context(self, frame_index: np.ndarray) -> np.ndarray:
        """Indices of the feature frames to keep: those starting inside the context window, if one is set."""
        context = self.options["context_frames"]
        return np.flatnonzero(frame_index < context) if context else np.arange(len(frame_index))

    def _forward(self, noisy: Any, level: NoiseLevel, keys: tuple[FeatureKey, ...],
                 clip_inputs: dict[str, Any] | None = None) -> dict[FeatureKey, Any]:
        """Tokens (N, C) of every (layer, capture) in ``keys`` for one noisy latent, from one forward of the
        denoiser of ``level`` that stops after the deepest block asked for."""
        spec = self.family_spec
        transformer = self._denoiser_at(level)
        blocks = spec.blocks(transformer)
        requests = []
        for layer, kind in sorted({(layer, parse_token(capture)[0]) for layer, capture in keys}):
            block_list, block = blocks[layer]
            if kind == OUTPUT:
                requests.append((block, (layer, kind),
                                 lambda output, name=block_list: spec.block_tokens(self, output, name)))
            else:
                requests.append((spec.attention_projection(block, kind), (layer, kind),
                                 lambda output, name=block_list: spec.attention_tokens(self, output, name)))
        deepest = blocks[max(layer for layer, _ in keys)][1]
        with capture_modules(requests, stop_after=deepest) as captured:
            run_until_deepest(lambda: spec.forward(self, transformer, noisy, level, clip_inputs or {}))
        return {key: self._capture_of(captured, key) for key in keys}

    def _capture_of(self, captured: dict[tuple[int, str], Any], key: FeatureKey) -> Any:
        """(N, C) of one key: a head's slice of the concatenated heads for a per-head capture."""
        layer, capture = key
        kind, head = parse_token(capture)
        tokens = captured[layer, kind][0]
        if head is None:
            return tokens
        heads = self.attention_heads()
        if not 0 <= head < heads:
            raise ValueError(f"model {self.name!r}: capture {capture!r} asks for head {head}; it has {heads}")
        width = tokens.shape[-1] // heads
        return tokens[:, head * width:(head + 1) * width]

    def provenance(self) -> dict[str, Any]:
        scheduler = getattr(self, "scheduler", None)
        return {
            **super().provenance(),
            "compute_dtype": str(getattr(self, "dtype", "unloaded")).replace("torch.", ""),
            "checkpoint": self.checkpoint.location,
            "scheduler": type(scheduler).__name__ if scheduler is not None else None,
            "scheduler_config": dict(scheduler.config) if scheduler is not None else None,
            "noise": {"seed": self.seed, "draws": self.options["noise_draws"],
                      "seeding": "SeedSequence([seed, clip, timestep])"},
            "patch_size": self.transformer_config.get("patch_size"),
            **self.family_spec.provenance(self),
        }

    def noise_attributes(self, timestep: int | None) -> dict[str, Any]:
        level = self.family_spec.noise_level(self, int(timestep), None)
        fed = {} if level.model_timestep is None else {"model_timestep": level.fed}
        return {"timestep_meaning": self.family_spec.timestep_meaning, **level.attributes(), **fed,
                **self.family_spec.timestep_attributes(self, level)}
