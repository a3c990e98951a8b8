"""The extractor interface every model family implements.

An extractor is built cheaply from its options (no weights loaded), can say how many selectable layers it
has, then loads its model once and serves every clip and timestep of one extraction job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from extractors.captures import OUTPUT, FeatureKey


@dataclass
class ClipFeatures:
    """Features of one clip: ``layers[L]`` is the block output of layer L, (T', h, w, C); ``captures`` holds
    the other captures (:mod:`extractors.captures`) by (layer, capture); ``frame_index[t]`` the clip frame
    of feature frame t."""

    layers: dict[int, np.ndarray]
    frame_index: np.ndarray
    captures: dict[FeatureKey, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, arrays: Mapping[FeatureKey, np.ndarray], frame_index: np.ndarray) -> ClipFeatures:
        return cls({layer: a for (layer, capture), a in arrays.items() if capture == OUTPUT}, frame_index,
                   {key: a for key, a in arrays.items() if key[1] != OUTPUT})

    def arrays(self) -> dict[FeatureKey, np.ndarray]:
        """Every captured array by (layer, capture)."""
        return {**{(layer, OUTPUT): a for layer, a in self.layers.items()}, **self.captures}


class OptionError(ValueError):
    """An unknown or invalid family option in the config."""


class Extractor(ABC):
    """Base class: subclasses set the class attributes and implement the abstract methods.

    ``paradigm`` groups sources in results tables: ``baseline`` (controls such as pixels or random features),
    ``vgm`` (video generation models), ``vlm`` (vision-language models), ``vision-encoder`` (contrastive
    image-text towers such as SigLIP and CLIP).
    """

    family: ClassVar[str]
    paradigm: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ("frames",)  # clip-store arrays the extractor reads per clip
    uses_timestep: ClassVar[bool] = False
    takes_checkpoint: ClassVar[bool] = False
    frame_per_clip_frame: ClassVar[bool] = False  # one feature frame per clip frame, in order
    default_options: ClassVar[Mapping[str, Any]] = {}
    captures_attention: ClassVar[bool] = False  # can capture attention q/k/v besides block outputs
    presets: ClassVar[Mapping[str, Any]] = {}  # preset name -> extractors.presets.Preset
    tiny_models: ClassVar[Mapping[str, dict[str, Any]]] = {}  # tiny random-init models (extractors.tiny_models)

    def __init__(self, name: str, options: Mapping[str, Any], *, seed: int = 0,
                 checkpoint: str | None = None, captures: tuple[str, ...] = (OUTPUT,)) -> None:
        if checkpoint is not None and not self.takes_checkpoint:
            raise OptionError(f"model {name!r} (family {self.family!r}) has no weights; remove 'checkpoint'")
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            raise OptionError(f"model {name!r} (family {self.family!r}): unknown option(s) {unknown}; "
                              f"known: {sorted(self.default_options)}")
        self.name = name
        self.options = {**self.default_options, **options}
        self.seed = seed
        if not self.captures_attention and tuple(captures) != (OUTPUT,):
            raise OptionError(f"model {name!r} (family {self.family!r}) captures block outputs only; "
                              f"capture {list(captures)} needs a video diffusion family")
        self.captures = tuple(captures)
        self.validate_options()

    def validate_options(self) -> None:
        """Raise :class:`OptionError` naming the option when a value is unusable."""

    def positive_int_option(self, key: str) -> int:
        value = self.options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"model {self.name!r}: option {key}={value!r} must be a positive integer")
        return value

    @property
    def random_init(self) -> bool:
        """True when the weights are random (tiny demo models); such sources are labelled everywhere."""
        return False

    @abstractmethod
    def num_layers(self) -> int:
        """Number of selectable layers; must not load weights."""

    def named_layers(self) -> dict[str, tuple[int, ...]]:
        """Layer sets a config may name instead of listing indices (e.g. Qwen3-VL's ``deepstack``)."""
        return {}

    def attention_heads(self) -> int | None:
        """Heads of the self-attention whose q/k/v can be captured; None when the family captures none."""
        return None

    def channels(self) -> int | None:
        """Channels of the stored features, when known without loading weights."""
        return None

    def expected_frame_index(self, num_frames: int) -> np.ndarray | None:
        """The ``frame_index`` extraction will record on clips of ``num_frames`` frames, when the options
        alone determine it (checked against fusions before any job runs); None when only extraction tells."""
        return np.arange(num_frames) if self.frame_per_clip_frame else None

    def feature_grid(self, height: int, width: int) -> tuple[int, int] | None:
        """(h, w) of the feature grid for frames of ``height`` x ``width`` pixels, from the options and the
        checkpoint's configs alone; None when only extraction tells (or extraction refuses such frames)."""
        return None

    def feature_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int] | None:
        """(T', h, w, C) of the features one clip of ``num_frames`` frames at ``height`` x ``width`` gets per
        layer (and per timestep), from the options and the checkpoint's configs alone (no weights loaded);
        None when only extraction can tell."""
        index = self.expected_frame_index(num_frames)
        grid = self.feature_grid(height, width)
        channels = self.channels()
        if index is None or grid is None or channels is None:
            return None
        return len(index), int(grid[0]), int(grid[1]), int(channels)

    def load(self) -> None:
        """Load weights (once per job). Baselines have nothing to load."""

    @abstractmethod
    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        """Features of one clip's frames (T, H, W, 3) uint8 at the resolved ``layers``.

        ``clip`` (the clip's index in its clip store) seeds anything random per clip, e.g. noise.
        """

    def extract_timesteps(self, frames: np.ndarray, layers: tuple[int, ...], timesteps: tuple[int | None, ...], *,
                          clip: int = 0) -> dict[int | None, ClipFeatures]:
        """Features at every timestep; models override it to share work across timesteps (VAE latents)."""
        return {t: self.extract(frames, layers, t, clip=clip) for t in timesteps}

    def extract_clip(self, arrays: Mapping[str, np.ndarray], layers: tuple[int, ...],
                     timesteps: tuple[int | None, ...], *, clip: int = 0,
                     frame_maps: Mapping[str, np.ndarray] | None = None) -> dict[int | None, ClipFeatures]:
        """Features of one clip from its clip-store ``arrays`` (those named by ``inputs``, cut to the clip's
        own frames); what the job calls. ``frame_maps`` gives each array's clip frame per row (ground truth
        may be kept at some frames only). Image and video models read the frames (always complete); the
        ground-truth oracle reads the ground truth."""
        return self.extract_timesteps(arrays["frames"], layers, timesteps, clip=clip)

    def check_timestep(self, timestep: int) -> None:
        """Raise :class:`OptionError` when the model cannot represent ``timestep``."""

    def noise_attributes(self, timestep: int | None) -> dict[str, Any]:
        """What ``timestep`` means for this model (sigma or alpha_bar); empty for models without noise."""
        return {}

    def provenance(self) -> dict[str, Any]:
        """Attributes recorded on every feature store this extractor writes."""
        return {"options": dict(self.options), "random_init": self.random_init, "compute_dtype": "float32",
                "noise": None}
