"""Cheap checks on read, so a damaged or foreign store fails with one line instead of a wrong number.

- :func:`check_array`: an array's dtype, rank and shape against the documented layout (at open).
- :func:`shard_written`: whether a clip's Zarr shard exists. Zarr reads a missing shard as the fill value,
  so a store whose files were partly lost would otherwise read as zeros or NaNs. Writers store every
  shard, fill-valued ones included (``write_empty_chunks``), so a missing shard always means damage.
- :func:`require_finite`: no NaN or inf in what was read (features never hold them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from clipstore.errors import StoreError

# Every shard is stored, even when it holds only the fill value: a missing shard then means damage.
WRITE_EVERY_CHUNK = {"write_empty_chunks": True}


def check_array(store: Path, name: str, array: zarr.Array, dtype: str, shape: Sequence[int | None]) -> None:
    """``array`` has ``dtype`` and ``shape`` (None: any size on that axis), or one line naming both."""
    if array.dtype != np.dtype(dtype):
        raise StoreError(f"{store}: array {name!r} has dtype {array.dtype}, the layout says {dtype} "
                         f"(docs/stores.md)")
    expected = tuple(shape)
    if len(array.shape) != len(expected) or any(e is not None and e != s for s, e in zip(array.shape, expected)):
        shown = tuple("*" if e is None else e for e in expected)
        raise StoreError(f"{store}: array {name!r} has shape {array.shape}, the layout says {shown} "
                         f"(docs/stores.md)")


def shard_written(store: Path, array: zarr.Array, row: int) -> bool:
    """Whether row ``row`` of a (rows, ...) array sharded one row per shard has its shard on disk."""
    key = array.metadata.encode_chunk_key((int(row),) + (0,) * (array.ndim - 1))
    return (store / array.path / key).exists()


def non_finite(values: np.ndarray) -> int:
    """How many of ``values`` are NaN or infinite."""
    if values.dtype == np.float16:  # NaN and inf are the values with every exponent bit set: integer ops
        return int(np.count_nonzero((values.view(np.uint16) & 0x7C00) == 0x7C00))
    return int(np.count_nonzero(~np.isfinite(values)))


def require_finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values``, or a :class:`StoreError` naming ``what`` when any is NaN or infinite."""
    bad = non_finite(values)
    if bad:
        raise StoreError(f"{what}: {bad} non-finite value(s) read; the store is damaged: remove it and "
                         "rerun the job that writes it")
    return values
