"""Tiny random-initialised models for the demo and the tests (no downloads, no weights).

Each entry is the config of a real diffusers pipeline, or of a real transformers model (key
``transformers``: class name and config), of the same classes the paper's checkpoints use, shrunk to run
in seconds on a CPU. A pipeline entry maps each component to (class name, config), except the special keys:
``pipeline`` (the pipeline class), ``pipeline_config`` (its own registered config, e.g. Wan2.2's
``boundary_ratio``) and ``tokenizers`` (tokenizer component -> ``"module:function"`` building it; default:
one word-level ``tokenizer``). :func:`build_tiny_model` writes one with ``save_pretrained``; extractors then load it
through exactly the ``from_pretrained`` path real checkpoints take. Sources made from them are labelled
random-init everywhere (``options: {random_init: true}`` in the config).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TINY_ROOT = Path("resources/models")

def _collect() -> dict[str, dict[str, Any]]:
    from extractors.registry import families

    return {name: spec for cls in families().values() for name, spec in cls.tiny_models.items()}


# Each family's tiny models live beside its class (``tiny_models``); this is their union.
TINY_MODELS: dict[str, dict[str, Any]] = _collect()


def tiny_model_name(location: str) -> str | None:
    """The tiny model a checkpoint location names (its last path part), else None."""
    name = Path(location).name
    return name if name in TINY_MODELS else None


def built_by_workflow(location: str) -> bool:
    """Whether the workflow's tiny_model rule writes this checkpoint (``TINY_ROOT/<tiny name>``)."""
    return Path(location).parent == TINY_ROOT and tiny_model_name(location) is not None


def tiny_transformers_config(name: str) -> dict[str, Any]:
    """A tiny transformers model's config, with the keys its config.json will have that extractors read."""
    class_name, config = TINY_MODELS[name]["transformers"]
    return {"architectures": [class_name], **config}


def expected_files(name: str) -> dict[str, dict[str, Any]]:
    """The JSON files of tiny model ``name`` that extractors read, as :func:`build_tiny_model` will write them
    (for :func:`extractors.checkpoints.expect_checkpoint`: plan a workflow before its tiny models exist)."""
    spec = TINY_MODELS[name]
    if "transformers" in spec:
        return {"config.json": tiny_transformers_config(name)}
    components = [c for c in spec if c not in SPECIAL_KEYS]
    index = {"_class_name": spec["pipeline"], **spec.get("pipeline_config", {}),
             **{c: ["transformers", "PreTrainedTokenizerFast"] for c in _tokenizer_builders(spec)},
             **{c: [_library(c), spec[c][0]] for c in components}}
    files = {"model_index.json": index}
    for component in components:
        if component == "image_processor":
            continue  # preprocessor_config.json, which extractors never read from a pipeline
        config_file = "scheduler_config.json" if component == "scheduler" else "config.json"
        class_name, config = spec[component]
        transformers = _library(component) == "transformers"
        named = {"architectures": [class_name]} if transformers else {"_class_name": class_name}
        files[f"{component}/{config_file}"] = {**named, **config}
    return files


# Special tokens of the tiny VLM tokenizer, at the ids the tiny configs name (ChatML, Qwen and InternVL).
VLM_SPECIAL_TOKENS = {"<|im_start|>": 240, "<|im_end|>": 241, "<|endoftext|>": 242, "<img>": 246, "</img>": 247,
                      "<IMG_CONTEXT>": 248, "<|image_pad|>": 250, "<|video_pad|>": 251, "<|vision_start|>": 252,
                      "<|vision_end|>": 253}


def _vlm_tokenizer() -> Any:
    """A 256-token word-level tokenizer with the VLM special tokens at fixed ids (offline, built in code)."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "Frame", ":", "Describe", "the", "scene", ".", *map(str, range(100))]
    vocab = {word: i for i, word in enumerate(words)} | VLM_SPECIAL_TOKENS
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in VLM_SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>")


def _build_tiny_transformers(name: str, path: Path) -> None:
    from transformers import AutoConfig

    from extractors.vlm import transformers_class

    class_name, config = TINY_MODELS[name]["transformers"]
    model = transformers_class(class_name)(AutoConfig.for_model(**config))
    model.save_pretrained(path)
    if TINY_MODELS[name].get("tokenizer", True):
        _vlm_tokenizer().save_pretrained(path)


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(29)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def t5_tokenizer_with_eos() -> Any:
    """The word-level tokenizer ending every text with ``</s>`` as T5's does: the empty prompt is one valid
    token then padding, so the attention mask a pipeline builds has the real model's shape (LTX, Mochi)."""
    from tokenizers import processors

    tokenizer = _tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tokenizer.eos_token_id)])
    return tokenizer


TRANSFORMERS_COMPONENTS = ("text_encoder", "text_encoder_2", "image_encoder", "image_processor")
SPECIAL_KEYS = ("pipeline", "pipeline_config", "tokenizers")


def _library(component: str) -> str:
    return "transformers" if component in TRANSFORMERS_COMPONENTS else "diffusers"


def _tokenizer_builders(spec: dict[str, Any]) -> dict[str, str]:
    return spec.get("tokenizers", {"tokenizer": "extractors.tiny_models:_tokenizer"})


def _build_tokenizer(target: str) -> Any:
    import importlib

    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)()


def _component(library: str, class_name: str, config: dict[str, Any]) -> Any:
    import importlib
    import re

    cls = getattr(importlib.import_module(library), class_name)
    if library == "transformers" and class_name.endswith("Model"):
        # UMT5EncoderModel -> UMT5Config, T5EncoderModel -> T5Config, CLIPVisionModel -> CLIPVisionConfig
        config_name = re.sub(r"(EncoderModel|Model)$", "Config", class_name)
        return cls(getattr(importlib.import_module("transformers"), config_name)(**config))
    return cls(**config)


def build_tiny_model(name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write tiny model ``name`` (random weights from ``seed``) as a diffusers pipeline directory."""
    import importlib

    import torch

    spec = TINY_MODELS[name]
    torch.manual_seed(seed)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if "transformers" in spec:
        _build_tiny_transformers(name, partial)
        partial.rename(path)
        return path
    parts = {component: _build_tokenizer(target) for component, target in _tokenizer_builders(spec).items()}
    for component, value in spec.items():
        if component in SPECIAL_KEYS:
            continue
        class_name, config = value
        parts[component] = _component(_library(component), class_name, config)
    pipeline_class = getattr(importlib.import_module("diffusers"), spec["pipeline"])
    pipeline = pipeline_class(**parts, **spec.get("pipeline_config", {}))
    pipeline.save_pretrained(partial)
    partial.rename(path)
    return path
