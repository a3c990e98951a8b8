"""The grammar of every id that appears in paths, Snakemake wildcards and tables (docs/sources.md).

- A **name** (of a model or a fusion): ``[A-Za-z0-9][A-Za-z0-9_.+-]*``. Models and fusions share one name
  space, because both own a folder ``results/features/{dataset}/{name}/``.
- A **timestep token**: ``t{value}`` for generative models (the value fed to the denoiser, 0 = clean) and
  ``none`` for sources without noise.
- A **source id**: ``{name}@{timestep token}@L{layer}``, one cached array: ``wan-1.3b@t500@L20``,
  ``pixels@none@L0``; a fusion is ``{fusion}@none@L0``. A capture other than the block output follows the
  layer (:mod:`extractors.captures`): ``wan-1.3b@t500@L20.attn_k``, ``wan-1.3b@t500@L20.attn_k.h3``.

Everything that parses or matches these ids uses this module, the Snakemake wildcard constraints included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extractors.captures import ATTENTION_TOKEN, OUTPUT

NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
TIMESTEP = r"none|t\d+"
# Non-capturing groups only: Snakemake embeds wildcard constraints in its own named-group regex.
SOURCE = rf"{NAME}@(?:{TIMESTEP})@L\d+(?:\.{ATTENTION_TOKEN})?"

_NAME_RE = re.compile(rf"^{NAME}$")
_SOURCE_RE = re.compile(
    rf"^(?P<name>{NAME})@(?P<timestep>{TIMESTEP})@L(?P<layer>\d+)(?:\.(?P<capture>{ATTENTION_TOKEN}))?$")


def check_name(name: str, what: str) -> str:
    """``name`` if it is a valid model or fusion name, else a ValueError naming ``what`` it is."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{what} name {name!r} is not allowed: use letters, digits and _ . + - "
                         f"(starting with a letter or digit)")
    return name


def timestep_token(timestep: int | None) -> str:
    """Path token of a timestep: ``t{value}`` for generative models, ``none`` otherwise."""
    return "none" if timestep is None else f"t{timestep}"


def parse_timestep_token(token: str) -> int | None:
    if token == "none":
        return None
    if re.fullmatch(r"t\d+", token):
        return int(token[1:])
    raise ValueError(f"bad timestep token {token!r}; expected 'none' or 't<integer>'")


@dataclass(frozen=True)
class SourceId:
    """One cached feature array: a model (or fusion) at a timestep token, a layer and a capture."""

    model: str
    timestep: str  # timestep token
    layer: int
    capture: str = OUTPUT  # extractors.captures token: output, attn_k, attn_k.h3, ...

    def __str__(self) -> str:
        suffix = "" if self.capture == OUTPUT else f".{self.capture}"
        return f"{self.model}@{self.timestep}@L{self.layer}{suffix}"

    @classmethod
    def parse(cls, text: str) -> SourceId:
        match = _SOURCE_RE.match(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"bad source id {text!r}; expected '<name>@<none|t<int>>@L<layer>[.<capture>]', "
                             f"e.g. 'wan-1.3b@t500@L20', 'wan-1.3b@t500@L20.attn_k' or 'pixels@none@L0'")
        return cls(match["name"], match["timestep"], int(match["layer"]), match["capture"] or OUTPUT)
