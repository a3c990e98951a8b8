"""Architecture defaults the torch probe nets of every task share, kept free of torch so the workflow can
validate a config without importing it (every Snakemake start and every cluster job parses the config).
Each task composes its nets' settings from these in its :class:`~probes.taskspec.TaskSpec`."""

from __future__ import annotations

from typing import Any

LIGHT_COMMON: dict[str, Any] = {"dim": 128, "heads": 4, "blocks": 1, "mlp_ratio": 2.0, "max_views": 16,
                                "dropout": 0.0}
PAPER_COMMON: dict[str, Any] = {"heads": 16, "mlp_ratio": 4.0, "registers": 4, "layerscale": 0.01}
