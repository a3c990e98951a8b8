"""What the video-family tests share: recording a module's keyword inputs, and an extraction with the
transformer's inputs recorded."""

from __future__ import annotations

from typing import Any

import torch


class Recorder:
    """Records the keyword inputs (tensors cloned) of every call of ``module`` while installed; also a context
    manager that removes itself."""

    def __init__(self, module: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.handle = module.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, _module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    def remove(self) -> None:
        self.handle.remove()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: Any) -> None:
        self.remove()


def recorded_extract(extractor: Any, frames: Any, layers: tuple[int, ...], timestep: int,
                     clip: int = 0) -> tuple[Any, dict[str, Any]]:
    """(features, the transformer's keyword inputs) of one extraction: one call per noise draw, the first."""
    recorder = Recorder(extractor.transformer)
    try:
        features = extractor.extract(frames, layers, timestep, clip=clip)
    finally:
        recorder.remove()
    assert len(recorder.calls) == extractor.options["noise_draws"]
    return features, recorder.calls[0]
