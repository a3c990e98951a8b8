"""The data contract shared by extractors and probes: the canonical clip store and its synthetic source.

Importing this package is cheap (NumPy and Zarr only); torch is never imported here.
"""

import warnings

from clipstore.errors import StoreError
from clipstore.store import CLIP_ARRAYS, ClipStore, open_clip_store, write_clip_store

# Snakemake drops a `.snakemake_timestamp` file into every directory output, i.e. into our Zarr stores.
warnings.filterwarnings("ignore", message=r"Object at \.snakemake_timestamp is not recognized")

__all__ = ["CLIP_ARRAYS", "ClipStore", "StoreError", "open_clip_store", "write_clip_store"]
