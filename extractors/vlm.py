"""Image models from transformers (VLMs and their vision towers) as frozen feature sources: the shared parts.

Every such extractor feeds a clip's *query frames* as separate images (the paper's protocol: frame 0, then
1 + 4k inside the first ``context_frames`` frames) or an explicit list of clip frames, records each feature
frame's clip frame as ``frame_index``, and loads its weights with ``from_pretrained`` from a local directory
or the local Hugging Face cache. Two routes are offered where a model has both:

- ``route: llm`` (the paper's): hidden states of the language model at the visual-token positions, one
  forward of one multi-image conversation. Layer ``L`` is Hugging Face's ``hidden_states[L]``: 0 is the
  embedding output, ``L`` the output of decoder layer ``L - 1``, the last one after the final norm.
- ``route: tower``: outputs of the vision tower's blocks (layer ``L`` = block ``L``), loaded alone from the
  full checkpoint; missing tower weights are an error, never a silently random tower.

Family specifics live in :mod:`extractors.qwen`, :mod:`extractors.internvl` and :mod:`extractors.towers`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from clipstore.frames import query_frames
from extractors.base import ClipFeatures, Extractor, OptionError
from extractors.checkpoints import CheckpointError, CheckpointFiles, choose_device, open_model_checkpoint
from extractors.hooks import capture_hidden_states, run_until_deepest

log = logging.getLogger(__name__)


# --- checkpoints -----------------------------------------------------------------------------------------

class TransformersCheckpoint(CheckpointFiles):
    """A transformers checkpoint: ``config.json`` at its root, weights loaded with ``from_pretrained``."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.config = self.read_json("config.json")

    def preprocessor_config(self) -> dict[str, Any] | None:
        return self.optional_json("preprocessor_config.json")

    def load(self, class_name: str, **kwargs: Any) -> Any:
        """The whole model, through the transformers class ``class_name``."""
        self.require_written()
        model, info = transformers_class(class_name).from_pretrained(self.location, output_loading_info=True,
                                                                     **kwargs)
        self._refuse_missing(class_name, info)
        return model

    def load_part(self, class_name: str, key_mapping: Mapping[str, str], **kwargs: Any) -> Any:
        """One sub-model (a vision tower) from the full checkpoint; its keys renamed by ``key_mapping``.

        Without the right mapping its weights would stay random, silently: any missing weight is an error.
        """
        return self.load(class_name, key_mapping=dict(key_mapping), **kwargs)

    def _refuse_missing(self, class_name: str, info: Mapping[str, Any]) -> None:
        missing = sorted(info.get("missing_keys", ()))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise CheckpointError(f"checkpoint {self.location!r}: {class_name} would run with random weights: "
                                  f"{len(missing)} weight(s) not found ({shown})")

    def tokenizer(self, **kwargs: Any) -> Any:
        from transformers import AutoTokenizer

        self.require_written()
        return AutoTokenizer.from_pretrained(self.location, **kwargs)


def open_transformers_checkpoint(location: str) -> TransformersCheckpoint:
    return TransformersCheckpoint(location)


def transformers_class(class_name: str) -> Any:
    import transformers

    try:
        return getattr(transformers, class_name)
    except AttributeError:
        raise CheckpointError(f"transformers {transformers.__version__} has no class {class_name!r}") from None


# --- frames ----------------------------------------------------------------------------------------------

# --- the shared extractor -------------------------------------------------------------------------------

class ImageSequenceExtractor(Extractor):
    """Frames in as images, checkpoint, device: what every transformers image extractor shares.

    Subclasses implement :meth:`load_model` and :meth:`features` (and usually extend ``default_options``).
    """

    takes_checkpoint = True
    default_options: ClassVar[dict[str, Any]] = {
        "frames": "query",  # 'query' (frame 0, then 1 + 4k inside context_frames), or a list of clip frames
        "context_frames": 76,  # the paper's context window
        "random_init": False,  # True for the tiny demo models: labels their sources everywhere
        "device": "auto",  # auto = CUDA when present (bf16), else CPU (float32)
        "attn_implementation": None,  # passed to from_pretrained, e.g. flash_attention_2 on GPUs that have it
    }

    def __init__(self, name: str, options: Mapping[str, Any], *, seed: int = 0, checkpoint: str | None = None,
                 captures: tuple[str, ...] = ("output",)) -> None:
        self.checkpoint = open_model_checkpoint(name, self.family, checkpoint, open_transformers_checkpoint,
                                                "transformers model")
        self.input_grid: dict[str, Any] = {}
        super().__init__(name, options, seed=seed, checkpoint=checkpoint, captures=captures)

    @property
    def config(self) -> dict[str, Any]:
        return self.checkpoint.config

    def validate_options(self) -> None:
        self.positive_int_option("context_frames")
        frames = self.options["frames"]
        if frames != "query" and (not isinstance(frames, list) or not frames or
                                  any(isinstance(f, bool) or not isinstance(f, int) or f < 0 for f in frames)):
            raise OptionError(f"model {self.name!r}: option frames={frames!r} must be 'query' or a non-empty list "
                              f"of clip frame indices")
        if self.options["device"] not in ("auto", "cuda", "cpu"):
            raise OptionError(f"model {self.name!r}: option device={self.options['device']!r}; "
                              f"use auto, cuda or cpu")

    @property
    def random_init(self) -> bool:
        return bool(self.options["random_init"])

    def select_frames(self, num_frames: int, clip: int) -> list[int]:
        """The clip frames this model sees, in order; an explicit list must fit the clip."""
        frames = self.options["frames"]
        if frames == "query":
            return query_frames(num_frames, self.options["context_frames"])
        beyond = [f for f in frames if f >= num_frames]
        if beyond:
            raise ValueError(f"model {self.name!r}: clip {clip} has {num_frames} frames; option frames asks for "
                             f"{beyond}")
        return list(frames)

    def expected_frame_index(self, num_frames: int) -> np.ndarray | None:
        try:
            return np.asarray(self.select_frames(num_frames, clip=0), dtype=np.int64)
        except ValueError:
            return None  # extraction refuses such clips, naming them

    def load(self) -> None:
        self.device, self.dtype = choose_device(self.options["device"], self.name)
        self.load_model()

    def load_model(self) -> None:
        """Load what :meth:`features` needs onto ``self.device`` in ``self.dtype``."""
        raise NotImplementedError

    def load_kwargs(self) -> dict[str, Any]:
        """``from_pretrained`` keywords: the dtype, and the attention implementation when one is chosen
        (Qwen2.5-VL's windowed tower makes one attention call per window without flash attention)."""
        chosen = self.options["attn_implementation"]
        return {"dtype": self.dtype, **({"attn_implementation": chosen} if chosen else {})}

    def features(self, images: np.ndarray, layers: tuple[int, ...], clip: int) -> tuple[dict[int, Any], list[int]]:
        """Features ``{layer: (T', h, w, C) tensor}`` of ``images`` (N, H, W, 3) uint8, and for each feature
        frame the position in ``images`` it stands for."""
        raise NotImplementedError

    def extract(self, frames: np.ndarray, layers: tuple[int, ...], timestep: int | None, *,
                clip: int = 0) -> ClipFeatures:
        import torch

        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"model {self.name!r}: clip {clip}: expected (T, H, W, 3) uint8 frames, got "
                             f"{frames.shape} {frames.dtype}")
        chosen = self.select_frames(len(frames), clip)
        with torch.inference_mode():
            layer_tensors, positions = self.features(frames[chosen], layers, clip)
        frame_index = np.asarray([chosen[p] for p in positions], dtype=np.int64)
        return ClipFeatures({layer: t.float().cpu().numpy() for layer, t in layer_tensors.items()}, frame_index)

    def record_grid(self, **grid: Any) -> None:
        """Log the input grid the first time it is seen (or when it changes); stored with the features."""
        grid = {key: [int(x) for x in np.asarray(value).ravel()] for key, value in grid.items()}
        if grid != self.input_grid:
            log.info("%s: input grid %s", self.name, grid)
            self.input_grid = grid

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(),
                "compute_dtype": str(getattr(self, "dtype", "unloaded")).replace("torch.", ""),
                "checkpoint": self.checkpoint.location,
                "frames": self.options["frames"],
                "input_grid": self.input_grid}


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's config: nested (transformers 5 format) or at the top level (older checkpoints)."""
    return config.get("text_config") or config


class VisionLanguageExtractor(ImageSequenceExtractor):
    """A VLM with both routes: ``route: llm`` (the paper's) or ``route: tower``; the layer count and channels
    follow the route. Subclasses name the key of their tower's depth in ``vision_config``."""

    paradigm = "vlm"
    tower_depth_key: ClassVar[str]
    default_options: ClassVar[dict[str, Any]] = {
        **ImageSequenceExtractor.default_options,
        "route": "llm",  # llm: decoder hidden states at the visual tokens (paper) | tower: vision-tower blocks
        "prompt": "Describe the scene.",  # after every image: cannot change a visual token
    }

    def validate_options(self) -> None:
        super().validate_options()
        if self.options["route"] not in ("llm", "tower"):
            raise OptionError(f"model {self.name!r}: option route={self.options['route']!r}; use llm or tower")

    @property
    def vision(self) -> dict[str, Any]:
        return self.config["vision_config"]

    @property
    def language_route(self) -> bool:
        return self.options["route"] == "llm"

    def num_layers(self) -> int:
        if self.language_route:
            return int(text_config(self.config)["num_hidden_layers"]) + 1  # hidden_states[0] = embeddings
        return int(self.vision[self.tower_depth_key])

    def channels(self) -> int:
        return int(text_config(self.config)["hidden_size"] if self.language_route else self.vision["hidden_size"])

    def provenance(self) -> dict[str, Any]:
        meaning = ("hidden_states[L] of the language model at the image-token positions (0 = embeddings)"
                   if self.language_route else "output of vision-tower block L, raster (row, column) order")
        return {**super().provenance(), "route": self.options["route"], "layer_meaning": meaning}


class LanguageModelRoute:
    """The paper's route: one multi-image conversation, hidden states at the visual-token positions.

    The conversation is rendered in ChatML (the format of the Qwen and InternVL chat templates):
    an optional system turn, then one user turn ``Frame 1: <image>\\nFrame 2: <image>\\n...{prompt}``, then the
    assistant header. The prompt comes after every image, so under causal attention it cannot change a
    visual token; the system turn comes before them, so it is part of the recorded options.
    """

    def __init__(self, tokenizer: Any, image_token_id: int) -> None:
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id

    def conversation(self, placeholders: Sequence[str], prompt: str, system_prompt: str | None) -> str:
        system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
        images = "".join(f"Frame {i + 1}: {placeholder}\n" for i, placeholder in enumerate(placeholders))
        return f"{system}<|im_start|>user\n{images}{prompt}<|im_end|>\n<|im_start|>assistant\n"

    def input_ids(self, text: str, expected_visual_tokens: int, model: str) -> Any:
        import torch

        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ids], dtype=torch.long)
        found = int((ids == self.image_token_id).sum())
        if found != expected_visual_tokens:
            raise ValueError(f"model {model!r}: the tokenizer produced {found} image tokens (id "
                             f"{self.image_token_id}) for {expected_visual_tokens} visual features; its special "
                             f"tokens do not match the model config")
        return ids

    def hidden_states(self, model: Any, inputs: dict[str, Any], layers: tuple[int, ...],
                      grid: tuple[int, int, int]) -> dict[int, Any]:
        """``{layer: (images, h, w, C)}``: the hidden states at the visual positions, in token order.

        ``model`` is a transformers ``...ForConditionalGeneration`` whose decoder is
        ``model.model.language_model`` (Qwen-VL and InternVL alike)."""
        decoder = model.model.language_model
        visual = inputs["input_ids"][0] == self.image_token_id
        with capture_hidden_states(decoder.layers, decoder.norm, layers) as captured:
            run_until_deepest(lambda: model(**inputs, use_cache=False))
        return {layer: states[0, visual].reshape(*grid, -1) for layer, states in captured.items()}
