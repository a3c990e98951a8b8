"""What a model entry captures at each selected layer (docs/sources.md#captures).

A **capture** is one kind of per-token tensor read out of a block:

- ``output``: the block's output (the default; every family);
- ``attn_q``, ``attn_k``, ``attn_v``: the block's self-attention queries, keys or values for the video tokens,
  heads concatenated (video diffusion families). Queries and keys are taken after the model's own q/k
  normalisation and before rotary position embeddings; values after their projection;
- ``attn_q.h3`` (etc.): one head of them, with ``attention_heads: per_head``.

Each capture of each layer is its own array (``layer_{L}`` for outputs, ``layer_{L}.{capture}`` otherwise)
and its own source (``model@t500@L20.attn_k``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

OUTPUT = "output"
ATTENTION = ("attn_q", "attn_k", "attn_v")
KINDS = (OUTPUT, *ATTENTION)
HEAD_MODES = ("concat", "per_head")
# Non-capturing groups only: Snakemake embeds it in wildcard constraints (extractors/ids.py).
ATTENTION_TOKEN = r"attn_[qkv](?:\.h\d+)?"

FeatureKey = tuple[int, str]  # (layer, capture token)


class CaptureError(ValueError):
    """A ``capture`` or ``attention_heads`` entry that cannot be honoured."""


def normalise_captures(spec: object, *, model: str) -> tuple[str, ...]:
    """The capture kinds of a model entry, in the canonical order; ``None`` means ``[output]``."""
    if spec is None:
        return (OUTPUT,)
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise CaptureError(f"model {model!r}: capture must be a non-empty list of {list(KINDS)}, got {spec!r}")
    unknown = [kind for kind in spec if kind not in KINDS]
    if unknown:
        raise CaptureError(f"model {model!r}: unknown capture {unknown}; known: {list(KINDS)}")
    return tuple(kind for kind in KINDS if kind in spec)


def expand_heads(kinds: Sequence[str], mode: object, heads: int | None, *, model: str) -> tuple[str, ...]:
    """Capture tokens: attention kinds as they are (``concat``) or one token per head (``per_head``)."""
    if mode not in HEAD_MODES:
        raise CaptureError(f"model {model!r}: attention_heads={mode!r}; use one of {list(HEAD_MODES)}")
    if mode == "concat" or not any(kind in ATTENTION for kind in kinds):
        return tuple(kinds)
    if heads is None:
        raise CaptureError(f"model {model!r}: attention_heads: per_head needs the model's head count, which its "
                           f"family does not declare")
    return tuple(token for kind in kinds
                 for token in ([kind] if kind == OUTPUT else [f"{kind}.h{h}" for h in range(heads)]))


def parse_token(token: str) -> tuple[str, int | None]:
    """(kind, head or None) of a capture token such as ``attn_k.h3``."""
    if token == OUTPUT:
        return OUTPUT, None
    match = re.fullmatch(r"(attn_[qkv])(?:\.h(\d+))?", token)
    if not match:
        raise CaptureError(f"bad capture {token!r}; expected 'output', 'attn_q', 'attn_k', 'attn_v' or "
                           f"e.g. 'attn_k.h3'")
    return match[1], None if match[2] is None else int(match[2])


def array_name(layer: int, capture: str = OUTPUT) -> str:
    """The feature-store array of one (layer, capture): ``layer_20``, ``layer_20.attn_k``."""
    return f"layer_{layer}" if capture == OUTPUT else f"layer_{layer}.{capture}"


def feature_keys(layers: Sequence[int], captures: Sequence[str]) -> tuple[FeatureKey, ...]:
    """Every (layer, capture) one extraction stores, layer-major."""
    return tuple((layer, capture) for layer in layers for capture in captures)
