"""One normalised "which layers" spec, in the spirit of timm's ``forward_intermediates``.

A spec is ``"all"``, or a list of block indices where negative indices count from the end. It resolves to
a sorted tuple of distinct non-negative indices; any index outside ``[-n, n-1]`` is an error that names the
valid range. Extractors run blocks ``0 .. max(resolved)`` and no further.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

LayerSpec = Literal["all"] | Sequence[int]


class LayerSpecError(ValueError):
    """A layer spec that cannot be resolved against a model's block list."""


def resolve_layers(spec: LayerSpec, num_layers: int, *, model: str = "model",
                   named: Sequence[str] = ()) -> tuple[int, ...]:
    """Resolve ``spec`` against ``num_layers`` blocks; ``model`` names the model in error messages and
    ``named`` the layer-set names its family offers (resolved by the caller), listed in errors."""
    if num_layers < 1:
        raise LayerSpecError(f"{model}: has {num_layers} layers; nothing to select")
    if spec == "all":
        return tuple(range(num_layers))
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or len(spec) == 0:
        names = "".join(f", '{n}'" for n in named)
        raise LayerSpecError(f"{model}: layers must be 'all'{names} or a non-empty list of integers, got {spec!r}")
    resolved = set()
    for index in spec:
        if isinstance(index, bool) or not isinstance(index, int):
            raise LayerSpecError(f"{model}: layer {index!r} is not an integer")
        if not -num_layers <= index < num_layers:
            raise LayerSpecError(
                f"{model}: layer {index} is out of range; valid layers are 0..{num_layers - 1} "
                f"(or {-num_layers}..-1 from the end)"
            )
        resolved.add(index % num_layers)
    return tuple(sorted(resolved))
