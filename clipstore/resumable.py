"""Crash-safe, resumable writing of one Zarr v3 store.

A store is written under ``<path>.partial`` and renamed to ``<path>`` only once every clip is in, after the
completion marker (``complete: true`` on every array and on the root) is set. So a killed job never leaves
anything at ``<path>`` that a reader could mistake for complete. Each clip is written whole (one Zarr shard
per clip and array) and then listed in the root attribute ``clips_done``; a rerun with the same fingerprint
reopens the partial store and skips those clips instead of starting over.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import zarr

PARTIAL_SUFFIX = ".partial"


class ResumableStore:
    """Owns ``<path>.partial`` until :meth:`finish` renames it to ``path``.

    ``fingerprint`` identifies what is being written (model, layers, clips, ...): a partial store left by
    a run with a different fingerprint is discarded, never mixed with the new one.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.fingerprint = fingerprint
        if self.path.exists():
            shutil.rmtree(self.path)  # an older complete store for other inputs; Snakemake asked for a new one
        self.group, self.resumed = self._open_or_create()

    def _open_or_create(self) -> tuple[zarr.Group, bool]:
        if self.partial.exists():
            try:
                group = zarr.open_group(self.partial, mode="r+")
                if group.attrs.get("fingerprint") == self.fingerprint:
                    return group, True
            except (FileNotFoundError, ValueError, KeyError):
                pass  # unreadable leftovers of a killed run: start afresh
            shutil.rmtree(self.partial)
        group = zarr.open_group(self.partial, mode="w", zarr_format=3)
        group.attrs.update({"fingerprint": self.fingerprint, "clips_done": [], "complete": False})
        return group, False

    @property
    def clips_done(self) -> set[int]:
        return set(self.group.attrs["clips_done"])

    def mark_done(self, position: int) -> None:
        """Record that every array's data for the clip at ``position`` is written."""
        done = sorted(self.clips_done | {int(position)})
        self.group.attrs["clips_done"] = done

    def finish(self, attributes: dict[str, Any]) -> Path:
        """Set the final attributes and the completion marker (last), then move into place."""
        for name in self.group.array_keys():
            self.group[name].attrs["complete"] = True
        root_attrs = dict(attributes)
        root_attrs["complete"] = True
        self.group.attrs.update(root_attrs)
        del self.group.attrs["clips_done"]
        os.replace(self.partial, self.path)
        return self.path


def open_complete(path: str | os.PathLike, *, what: str, rerun: str) -> zarr.Group:
    """Open a finished store read-only, or raise a StoreError saying what is wrong and what to rerun.

    ``what`` names the store kind in messages ("clip store"); ``rerun`` the job that makes it.
    """
    from clipstore.errors import StoreError

    path = Path(path)
    if not path.exists():
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        hint = f" (an unfinished {partial.name} exists: rerun its {rerun})" if partial.exists() else ""
        raise StoreError(f"{what} {path} does not exist{hint}")
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError) as err:
        raise StoreError(f"{path} is not a Zarr v3 {what}: {err}") from err
    if group.attrs.get("complete") is not True:
        raise StoreError(f"{what} {path} is incomplete (no completion marker); rerun its {rerun}")
    return group
