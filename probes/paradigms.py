"""The paradigms that group feature sources in tables and plots: their order, display names and colours.

A source's paradigm comes from its extractor class (``Extractor.paradigm``) or, for fused sources, is
``fusion``. ``oracle`` rows are calibration (ground truth encoded as features): they bracket every column
from above and are never marked best.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paradigm:
    name: str
    label: str  # group heading in tables, legend entry in plots
    colour: str


PARADIGMS: dict[str, Paradigm] = {p.name: p for p in (
    Paradigm("vgm", "Video generation models", "#d95f02"),
    Paradigm("vlm", "Vision-language models", "#1b9e77"),
    Paradigm("vision-encoder", "Vision encoders", "#66a61e"),
    Paradigm("fusion", "Fusions", "#7570b3"),
    Paradigm("baseline", "Baselines", "#999999"),
    Paradigm("oracle", "Calibration", "#000000"),
)}
CALIBRATION = frozenset({"oracle"})
RANDOM_INIT_NOTE = ("Sources marked *(random-init)* come from randomly initialised models: they test the pipeline, "
                    "not a pretrained representation.")
UNKNOWN = Paradigm("other", "Other", "#333333")


def paradigm(name: str | None) -> Paradigm:
    """The paradigm called ``name``; an unknown name groups under "Other" after the known ones."""
    return PARADIGMS.get(name or "", UNKNOWN)


def paradigm_rank(name: str | None) -> int:
    """Sort key: the table order of :data:`PARADIGMS`, unknown names last."""
    order = list(PARADIGMS)
    return order.index(name) if name in PARADIGMS else len(order)


def marked(label: str, random_init: bool) -> str:
    """``label`` with the mark every table and plot puts on sources of randomly initialised models."""
    return label + (" (random-init)" if random_init else "")
