"""The demo's tiny random-init models, as the workflow sees them: checkpoints its tiny_model rule writes.

A config that names ``resources/models/<tiny name>`` asks the workflow to build that model first; until then
the plan knows its configs (from the builder's own table), so layers can be counted and options checked
before any job runs. Extractors never hear of tiny models: they read a checkpoint that is expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from extractors.checkpoints import expect_checkpoint
from extractors.tiny_models import TINY_MODELS, TINY_ROOT, built_by_workflow, expected_files

__all__ = ["TINY_MODELS", "TINY_ROOT", "expect_tiny_models", "workflow_checkpoint"]


def expect_tiny_models(entries: Iterable[Mapping[str, Any]]) -> None:
    """Declare the tiny models the config's ``models:`` entries name, before they are built."""
    for entry in entries:
        checkpoint = entry.get("checkpoint")
        if checkpoint and built_by_workflow(checkpoint) and not Path(checkpoint).exists():
            expect_checkpoint(checkpoint, expected_files(Path(checkpoint).name))


def workflow_checkpoint(checkpoint: str) -> bool:
    """Whether a checkpoint is a file the extraction job takes as input: a local directory, or a tiny model
    the tiny_model rule writes (hub ids are not files and are left to the extractor)."""
    return Path(checkpoint).exists() or built_by_workflow(checkpoint)
