"""Video diffusion transformers (diffusers) as frozen feature sources: one denoiser pass, no sampling.

The common recipe, shared by every family (family differences live in :mod:`extractors.wan` and
:mod:`extractors.cogvideox`):

1. frames -> the model's frame count and resolution, scaled to [-1, 1];
2. VAE posterior **mean**, normalised as the family's pipeline does;
3. noise at the requested timestep with the scheduler's formula, drawn from a generator seeded by the
   config seed and the clip index (optionally K draws, features averaged);
4. the empty prompt, encoded once per job by the model's own text encoder, which is then released;
5. one transformer forward per (clip, timestep, draw) that captures every requested block and stops
   after the deepest one; tokens -> (T', h, w, C).

``timestep`` always means the value fed to the denoiser (0 = clean): sigma = t / N for flow-matching
schedulers, alpha_bar = alphas_cumprod[t] for DDPM-style ones. Heavy libraries are imported in ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from extractors.base import ClipFeatures, Extractor, OptionError
from extractors.checkpoints import CheckpointError, CheckpointFiles, choose_device, open_model_checkpoint
from extractors.hooks import StopForward, capture_blocks, run_until_deepest

__all__ = ["CheckpointError", "StopForward", "capture_blocks", "run_until_deepest", "Checkpoint",
           "DiffusionVideoExtractor", "VideoFamilySpec", "NoiseLevel", "noise_level", "open_checkpoint"]


class Checkpoint(CheckpointFiles):
    """A diffusers pipeline checkpoint: a local directory (or a hub id already in the local cache).

    Components are loaded one at a time from the classes ``model_index.json`` names, so a job can free the
    text encoder before loading the transformer.
    """

    def __init__(self, location: str) -> None:
        super().__init__(location)
        index = self.read_json("model_index.json")
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


def open_checkpoint(location: str) -> Checkpoint:
    return Checkpoint(location)


@dataclass(frozen=True)
class NoiseLevel:
    """How much noise a timestep means, in the scheduler's own terms."""

    kind: str  # "flow" (x_t = (1 - sigma) x0 + sigma eps) or "ddpm" (sqrt(abar) x0 + sqrt(1 - abar) eps)
    timestep: int
    value: float  # sigma or alpha_bar

    def apply(self, x0: Any, noise: Any) -> Any:
        if self.kind == "flow":
            return (1.0 - self.value) * x0 + self.value * noise
        return self.value ** 0.5 * x0 + (1.0 - self.value) ** 0.5 * noise

    def attributes(self) -> dict[str, float]:
        return {"sigma": self.value} if self.kind == "flow" else {"alpha_bar": self.value}


def schedule_kind(class_name: str, config: dict[str, Any]) -> str:
    """``flow`` (Wan's FlowMatchEuler, or UniPC with flow sigmas) or ``ddpm`` (alphas_cumprod schedules)."""
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


class VideoFamilySpec:
    """What the family pieces share: causal 4k+1-frame VAEs and the pipeline's own prompt encoding.

    A family subclasses it and adds its facts and hooks (see :mod:`extractors.wan`).
    """

    pipeline: ClassVar[str]
    components: ClassVar[tuple[str, ...]]
    temporal_compression: ClassVar[int] = 4

    @classmethod
    def light_pipeline(cls, **parts: Any) -> Any:
        """The family's diffusers pipeline holding only ``parts``, to call its own helper methods."""
        return pipeline_class(cls.pipeline)(**{**dict.fromkeys(cls.components), **parts})

    @staticmethod
    def vae_compression(vae: dict[str, Any]) -> tuple[int, int]:
        """(temporal, spatial) downsampling of the family's VAE, from its config."""
        raise NotImplementedError

    @staticmethod
    def patch_size(transformer: dict[str, Any]) -> tuple[int, int, int]:
        """(time, height, width) latent cells per transformer token, from its config."""
        raise NotImplementedError

    @classmethod
    def check_frames(cls, model: str, frames: int) -> None:
        if (frames - 1) % cls.temporal_compression:
            raise OptionError(f"model {model!r}: frames={frames}; this VAE takes "
                              f"{cls.temporal_compression}k+1 frames (e.g. 17, 49, 81)")

    @classmethod
    def encode_prompt(cls, tokenizer: Any, encoder: Any, max_tokens: int, device: Any) -> Any:
        """The empty prompt through the pipeline's own encode_prompt, without classifier-free guidance."""
        pipe = cls.light_pipeline(tokenizer=tokenizer, text_encoder=encoder)
        embeds, _ = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=max_tokens,
                                       device=device)
        return embeds

    @classmethod
    def frame_index(cls, latent_frames: int) -> np.ndarray:
        return causal_frame_index(latent_frames, cls.temporal_compression)


def causal_frame_index(latent_frames: int, compression: int) -> np.ndarray:
    """Latent 0 encodes frame 0 alone; latent k+1 starts at frame compression*k + 1 (causal video VAEs)."""
    return np.asarray([0] + [compression * k + 1 for k in range(latent_frames - 1)], dtype=np.int64)


class DiffusionVideoExtractor(Extractor):
    """The common recipe; a family subclass sets ``family_spec`` and the registry names it."""

    paradigm = "vgm"
    uses_timestep = True
    takes_checkpoint = True
    family_spec: ClassVar[Any]
    default_options: ClassVar[dict[str, Any]] = {
        "frames": 81,  # frames fed to the model (the clip's first ones); 4k+1 for these VAEs
        "resolution": [480, 832],  # model input [height, width]
        "noise_draws": 1,  # K noise draws per (clip, timestep), features averaged
        "max_text_tokens": 512,
        "random_init": False,  # True for the tiny demo models: labels their sources everywhere
        "vae_tiling": False,  # tiled VAE encoding for large frames
        "context_frames": None,  # keep only feature frames starting before this clip frame (paper: 76)
        "device": "auto",  # auto = CUDA when present (bf16), else CPU (float32)
    }

    def __init__(self, name: str, options: dict[str, Any], *, seed: int = 0, checkpoint: str | None = None) -> None:
        self.checkpoint = open_model_checkpoint(name, self.family, checkpoint, open_checkpoint, "diffusers pipeline")
        super().__init__(name, options, seed=seed, checkpoint=checkpoint)

    def validate_options(self) -> None:
        for key in ("frames", "noise_draws", "max_text_tokens"):
            self.positive_int_option(key)
        if self.options["context_frames"] is not None:
            self.positive_int_option("context_frames")
        self.family_spec.check_frames(self.name, self.options["frames"])
        height, width = self.options["resolution"]
        multiple = self.family_spec.spatial_multiple
        if height % multiple or width % multiple:
            raise OptionError(f"model {self.name!r}: resolution {height}x{width} must be a multiple of {multiple}")
        self.checkpoint.require(self.family_spec.components)
        try:
            temporal, _ = self.family_spec.vae_compression(self.checkpoint.config("vae"))
        except CheckpointError as err:
            raise OptionError(f"model {self.name!r}: {err}") from None
        if temporal != self.family_spec.temporal_compression:
            raise OptionError(f"model {self.name!r} (checkpoint {self.checkpoint.location!r}): the VAE compresses "
                              f"time x{temporal}; this family expects x{self.family_spec.temporal_compression}")

    @property
    def random_init(self) -> bool:
        return bool(self.options["random_init"])

    def num_layers(self) -> int:
        return int(self.checkpoint.config("transformer")[self.family_spec.num_layers_key])

    def channels(self) -> int:
        config = self.checkpoint.config("transformer")
        return int(config["num_attention_heads"]) * int(config["attention_head_dim"])

    def feature_grid(self, height: int, width: int) -> tuple[int, int] | None:
        """Frames are resized to ``resolution``: one cell per VAE-compressed transformer patch of it."""
        _, spatial = self.family_spec.vae_compression(self.checkpoint.config("vae"))
        _, patch_h, patch_w = self.family_spec.patch_size(self.checkpoint.config("transformer"))
        res_h, res_w = self.options["resolution"]
        return res_h // (spatial * patch_h), res_w // (spatial * patch_w)

    def check_timestep(self, timestep: int) -> None:
        config = self.checkpoint.config("scheduler")
        try:
            check_timestep(config.get("_class_name", "scheduler"), config, timestep)
        except ValueError as err:
            raise OptionError(f"model {self.name!r}: {err}") from None

    # --- loading ----------------------------------------------------------------------------------------
    def load(self) -> None:
        self.device, self.dtype = choose_device(self.options["device"], self.name)
        self.text = self._encode_empty_prompt()  # the text encoder is freed before the big models load
        self.vae = self.checkpoint.load("vae", torch_dtype=self.dtype).to(self.device).eval()
        if self.options["vae_tiling"]:
            self.vae.enable_tiling()
        self.transformer = self.checkpoint.load("transformer", torch_dtype=self.dtype).to(self.device).eval()
        self.scheduler = self.checkpoint.load("scheduler")
        self.conditioning = self.family_spec.load_conditioning(self)

    def _encode_empty_prompt(self) -> Any:
        import gc

        import torch

        tokenizer = self.checkpoint.load("tokenizer")
        encoder = self.checkpoint.load("text_encoder", torch_dtype=self.dtype).to(self.device).eval()
        with torch.inference_mode():
            embeds = self.family_spec.encode_prompt(tokenizer, encoder, self.options["max_text_tokens"], self.device)
        del encoder, tokenizer
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return embeds.to(self.dtype)

    # --- extraction -------------------------------------------------------------------------------------
    def input_frames(self, available: int, clip: int | None = None) -> int:
        """Frames fed for a clip of ``available`` frames: option ``frames``, or for a shorter clip its longest
        prefix the VAE takes (4k + 1), so nothing past the clip is ever fed. The store records each clip's
        feature frames (``frame_count``)."""
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

        levels = [noise_level(self.scheduler, int(t)) for t in timesteps]
        spec = self.family_spec
        with torch.inference_mode():
            video = self.video_tensor(frames, clip)
            latents = spec.encode_video(self.vae, video)
            clip_inputs = spec.clip_conditioning(self, video, frames[: video.shape[2]])
            grid = spec.latent_grid(latents.shape, self.transformer.config)
            frame_index = spec.frame_index(grid[0])
            keep = self._in_context(frame_index)
            return {level.timestep: ClipFeatures(
                        self._features_at(level, latents, layers, clip_inputs, clip, grid, keep), frame_index[keep])
                    for level in levels}

    def _features_at(self, level: NoiseLevel, latents: Any, layers: tuple[int, ...], clip_inputs: dict[str, Any],
                     clip: int, grid: tuple[int, int, int], keep: np.ndarray) -> dict[int, np.ndarray]:
        """Block tokens at one noise level, averaged over the noise draws, as (T', h, w, C) float32."""
        import torch

        generator = self.generator(clip, level.timestep)
        totals: dict[int, Any] = {}
        for _ in range(self.options["noise_draws"]):
            noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents)
            noisy = level.apply(latents.float(), noise.float()).to(self.dtype)
            for layer, tokens in self._forward(noisy, level.timestep, layers, clip_inputs).items():
                totals[layer] = totals.get(layer, 0) + tokens.float()
        draws = self.options["noise_draws"]
        return {layer: (total / draws).reshape(*grid, -1)[keep].cpu().numpy() for layer, total in totals.items()}

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

    def _forward(self, noisy: Any, timestep: int, layers: tuple[int, ...],
                 clip_inputs: dict[str, Any] | None = None) -> dict[int, Any]:
        """Tokens (N, D) of ``layers`` for one noisy latent; ``clip_inputs`` from the family's
        ``clip_conditioning`` (e.g. image conditioning of I2V models)."""
        spec = self.family_spec
        blocks = getattr(self.transformer, spec.blocks_attr)
        with capture_blocks(blocks, layers, spec.block_tokens) as captured:
            run_until_deepest(lambda: spec.forward(self, noisy, timestep, clip_inputs or {}))
        return {layer: tokens[0] for layer, tokens in captured.items()}

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
            "patch_size": self.checkpoint.config("transformer").get("patch_size"),
        }

    def noise_attributes(self, timestep: int | None) -> dict[str, Any]:
        return {"timestep_meaning": "value fed to the denoiser (0 = clean)",
                **noise_level(self.scheduler, int(timestep)).attributes()}
