"""Default settings of the torch probe nets, kept free of torch so the workflow can validate a config without
importing it (every Snakemake start and every cluster job parses the config)."""

from __future__ import annotations

from typing import Any

_LIGHT_COMMON: dict[str, Any] = {"dim": 128, "heads": 4, "blocks": 1, "mlp_ratio": 2.0, "max_views": 16,
                                 "dropout": 0.0}
LIGHT_DEFAULTS: dict[str, dict[str, Any]] = {
    "tagging": dict(_LIGHT_COMMON),
    "instance": {**_LIGHT_COMMON, "embed_dim": 32},
    "geometry": dict(_LIGHT_COMMON),
}

_PAPER_COMMON: dict[str, Any] = {"heads": 16, "mlp_ratio": 4.0, "registers": 4, "layerscale": 0.01}
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "tagging": {**_PAPER_COMMON, "dim": 512, "depth": 2, "decoder_layers": 2},
    "instance": {**_PAPER_COMMON, "dim": 1024, "depth": 2, "embed_dim": 32, "hidden": 64},
    "geometry": {**_PAPER_COMMON, "dim": 1024, "depth": 4, "dpt_features": 256,
                 "dpt_channels": [256, 512, 1024, 1024], "output_stride": 4, "camera_depth": 4,
                 "camera_iterations": 4},
}
