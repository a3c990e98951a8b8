"""Checkpoint files and devices, shared by the diffusers (VGM) and transformers (VLM) extractors.

A checkpoint is a local directory or a hub id that is already in the local Hugging Face cache: nothing here
downloads. Configs are read as JSON, so planning a workflow never imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from extractors.base import OptionError

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint that cannot serve a family (missing file or component, unreadable config, missing weights)."""


class CheckpointFiles:
    """Files of one checkpoint, from its directory or from the local Hugging Face cache."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.path = Path(location)

    def resolve(self, relative: str) -> Path:
        if self.path.exists():
            return self.path / relative
        from huggingface_hub import hf_hub_download  # a hub id: only what is already cached locally

        try:
            return Path(hf_hub_download(self.location, relative, local_files_only=True))
        except Exception as err:  # noqa: BLE001 - any hub failure means "not available here"
            raise CheckpointError(f"checkpoint {self.location!r}: no local directory and {relative} is not in "
                                  f"the local Hugging Face cache ({type(err).__name__})") from None

    def read_json(self, relative: str) -> dict[str, Any]:
        path = self.resolve(relative)
        if not path.exists():
            raise CheckpointError(f"checkpoint {self.location!r} lacks {relative}")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"checkpoint {self.location!r}: {relative} is not valid JSON ({err})") from None

    def optional_json(self, relative: str) -> dict[str, Any] | None:
        """A JSON file the checkpoint may lack (e.g. preprocessor_config.json)."""
        try:
            return self.read_json(relative)
        except CheckpointError:
            return None


def planned_tiny_model(location: str) -> str | None:
    """The tiny demo model that ``location`` names when the workflow has yet to build it, else None (a
    directory that exists, or a hub id); a local path that does not exist is an error."""
    from extractors.tiny_models import tiny_model_name

    if Path(location).exists():
        return None
    tiny = tiny_model_name(location)
    if tiny is None and ("/" not in location or location.startswith((".", "/"))):
        raise CheckpointError(f"checkpoint {location!r} does not exist")
    return tiny


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
