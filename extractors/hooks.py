"""Capturing intermediate outputs with forward hooks, and stopping the forward after the deepest one.

In the spirit of timm's ``forward_intermediates``: a job asks for a set of layers, the model runs only as far
as the deepest of them, and the hooks are removed whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import contextmanager
from typing import Any


class StopForward(Exception):
    """Raised by the hook of the deepest requested layer: nothing after it needs to run."""


@contextmanager
def capture_blocks(blocks: Sequence[Any], layers: tuple[int, ...], output_of: Callable[[Any], Any]):
    """Record ``output_of(output of blocks[i])`` for ``i`` in ``layers``; stop after the deepest one.

    Yields the dict the captures land in.
    """
    captured: dict[int, Any] = {}
    deepest = max(layers)

    def hook(index: int):
        def record(_module, _inputs, output):
            captured[index] = output_of(output).detach()
            if index == deepest:
                raise StopForward
        return record

    handles = [blocks[i].register_forward_hook(hook(i)) for i in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_modules(requests: Sequence[tuple[Any, Hashable, Callable[[Any], Any]]], stop_after: Any):
    """Record ``convert(output)`` of each ``(module, key, convert)`` request under ``key``; stop the forward
    after ``stop_after`` has run (its own requests recorded first). Yields the dict the captures land in."""
    captured: dict[Hashable, Any] = {}

    def hook(key: Hashable, convert: Callable[[Any], Any]):
        def record(_module, _inputs, output):
            captured[key] = convert(output).detach()
        return record

    def stop(_module, _inputs, _output):
        raise StopForward

    handles = [module.register_forward_hook(hook(key, convert)) for module, key, convert in requests]
    handles.append(stop_after.register_forward_hook(stop))  # last: runs after the block's own captures
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_hidden_states(decoder_layers: Sequence[Any], final_norm: Any, layers: tuple[int, ...]):
    """Record Hugging Face ``hidden_states[L]`` of a decoder for ``L`` in ``layers``; stop after the deepest.

    ``hidden_states[0]`` is the input of decoder layer 0 (the embeddings, visual features scattered in),
    ``hidden_states[L]`` for ``0 < L < n`` the output of layer ``L - 1`` as that layer returns it (before
    anything the model adds between layers, e.g. Qwen3-VL's DeepStack features), and ``hidden_states[n]``
    the output of the final norm — exactly what ``output_hidden_states=True`` returns.
    """
    captured: dict[int, Any] = {}
    deepest = max(layers)
    count = len(decoder_layers)

    def record(index: int, value: Any) -> None:
        captured[index] = first_output(value).detach()
        if index == deepest:
            raise StopForward

    def embeddings_hook(_module, args, kwargs):
        record(0, args[0] if args else kwargs["hidden_states"])

    def output_hook(index: int):
        return lambda _module, _inputs, output: record(index, output)

    handles = []
    if 0 in layers:
        handles.append(decoder_layers[0].register_forward_pre_hook(embeddings_hook, with_kwargs=True))
    handles += [decoder_layers[i - 1].register_forward_hook(output_hook(i)) for i in layers if 0 < i < count]
    if count in layers:
        handles.append(final_norm.register_forward_hook(output_hook(count)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def first_output(output: Any) -> Any:
    """The hidden states of a block output: blocks return a tensor or a tuple that starts with it."""
    return output[0] if isinstance(output, tuple) else output


def run_until_deepest(forward: Callable[[], Any]) -> None:
    """Call ``forward()``; a StopForward from the deepest hook is the normal end."""
    try:
        forward()
    except StopForward:
        return
    raise RuntimeError("the forward finished without reaching the deepest requested layer")
