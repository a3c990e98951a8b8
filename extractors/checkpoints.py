"""Checkpoint files and devices, shared by the diffusers (VGM) and transformers (VLM) extractors.

A checkpoint is a local directory or a hub id that is already in the local Hugging Face cache: nothing here
downloads. Configs are read as JSON, so planning a workflow never imports torch.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from extractors.base import OptionError

T = TypeVar("T")

# Checkpoints a job has yet to write, by location: their JSON files (see expect_checkpoint).
_EXPECTED: dict[str, dict[str, dict[str, Any]]] = {}


class CheckpointError(ValueError):
    """A checkpoint that cannot serve a family (missing file or component, unreadable config, missing weights)."""


class CheckpointFiles:
    """Files of one checkpoint, from its directory or from the local Hugging Face cache."""

    def __init__(self, location: str) -> None:
        check_location(location)
        self.location = location
        self.path = Path(location)
        self.expected = None if self.path.exists() else _EXPECTED.get(_key(location))

    def resolve(self, relative: str) -> Path:
        if self.path.exists():
            return self.path / relative
        self.require_written()
        from huggingface_hub import hf_hub_download  # a hub id: only what is already cached locally

        try:
            return Path(hf_hub_download(self.location, relative, local_files_only=True))
        except Exception as err:  # noqa: BLE001 - any hub failure means "not available here"
            raise CheckpointError(f"checkpoint {self.location!r}: no local directory and {relative} is not in "
                                  f"the local Hugging Face cache ({type(err).__name__})") from None

    def read_json(self, relative: str) -> dict[str, Any]:
        if self.expected is not None:
            if relative not in self.expected:
                raise CheckpointError(f"checkpoint {self.location!r} lacks {relative}")
            return copy.deepcopy(self.expected[relative])
        path = self.resolve(relative)
        if not path.exists():
            raise CheckpointError(f"checkpoint {self.location!r} lacks {relative}")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"checkpoint {self.location!r}: {relative} is not valid JSON ({err})") from None

    def require_written(self) -> None:
        """Weights can only be loaded from a checkpoint that exists, not from one a job has yet to write."""
        if self.expected is not None and not self.path.exists():
            raise CheckpointError(f"checkpoint {self.location!r} is not written yet (a workflow job writes it; "
                                  f"only its configs are known)")

    def optional_json(self, relative: str) -> dict[str, Any] | None:
        """A JSON file the checkpoint may lack (e.g. preprocessor_config.json)."""
        try:
            return self.read_json(relative)
        except CheckpointError:
            return None


def _key(location: str) -> str:
    return os.path.normpath(location)


def expect_checkpoint(location: str, files: Mapping[str, dict[str, Any]]) -> None:
    """Declare that a job will write a checkpoint at ``location``, with these JSON files (relative path ->
    content), so that a workflow can be planned (layers counted, options checked) before the checkpoint
    exists. Loading weights from it before it is written is an error naming it."""
    _EXPECTED[_key(location)] = {relative: copy.deepcopy(content) for relative, content in files.items()}


def check_location(location: str) -> None:
    """A local path (``/``, ``.`` or a bare name) must exist or be expected; anything else is a hub id."""
    if Path(location).exists() or _key(location) in _EXPECTED:
        return
    if "/" not in location or location.startswith((".", "/")):
        raise CheckpointError(f"checkpoint {location!r} does not exist")


def choose_device(option: str, model: str) -> tuple[Any, Any]:
    """(device, dtype) for ``option`` auto | cuda | cpu: CUDA runs in bfloat16, the CPU in float32."""
    import torch

    cuda = option in ("auto", "cuda") and torch.cuda.is_available()
    if option == "cuda" and not cuda:
        raise OptionError(f"model {model!r}: device 'cuda' requested but CUDA is not available")
    return (torch.device("cuda"), torch.bfloat16) if cuda else (torch.device("cpu"), torch.float32)


def open_model_checkpoint(model: str, family: str, location: str | None, opener: Callable[[str], T], kind: str) -> T:
    """``opener(location)`` for a config entry; a missing or unusable checkpoint is an :class:`OptionError`
    naming the model (``kind`` says what the family loads, e.g. "diffusers pipeline")."""
    if location is None:
        raise OptionError(f"model {model!r}: family {family!r} needs 'checkpoint' (a local directory or hub id of "
                          f"a {kind})")
    try:
        return opener(location)
    except CheckpointError as err:
        raise OptionError(f"model {model!r}: {err}") from None
