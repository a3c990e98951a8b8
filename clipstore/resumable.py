"""Crash-safe, resumable writing of one Zarr v3 store.

A store is written under ``<path>.partial`` and renamed to ``<path>`` only once every clip is in, after the
completion marker (``complete: true`` on every array and on the root) is set. So a killed job never leaves
anything at ``<path>`` that a reader could mistake for complete. Each clip is written whole (one Zarr shard
per clip and array) and then listed in the root attribute ``clips_done``; a rerun with the same fingerprint
reopens the partial store and skips those clips instead of starting over.

Every state a kill can leave is one a rerun resumes or discards safely:

- ``<path>.partial`` without the marker: resumed per clip (same fingerprint) or discarded (another one);
- ``<path>.partial`` with the marker (killed while publishing): published as it is;
- ``<path>`` complete with the same fingerprint: kept, nothing is rewritten;
- ``<path>.done``: a hard-linked snapshot of a published store, kept while its job publishes its other
  stores (:meth:`ResumableStore.finish` with ``keep_snapshot``). Snakemake removes the outputs of a job it
  saw killed; a rerun restores such a store from its snapshot instead of recomputing it.

One writer at a time: a writer holds an exclusive lock on ``<path>.lock`` (``flock``, released when its
process ends, however it ends), and a second writer of the same store fails at once, naming the first.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import zarr

from clipstore.errors import StoreError
from clipstore.verify import WRITE_EVERY_CHUNK

PARTIAL_SUFFIX = ".partial"
SNAPSHOT_SUFFIX = ".done"
LOCK_SUFFIX = ".lock"


class ResumableStore:
    """Owns ``<path>.partial`` until :meth:`finish` renames it to ``path``.

    ``fingerprint`` identifies what is being written (model, layers, clips, ...): a partial store left by
    a run with a different fingerprint is discarded, never mixed with the new one. ``published`` is True
    when a finished store for this fingerprint already exists (or was restored from its snapshot): there is
    nothing to write and :meth:`finish` leaves it as it is.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.partial = _sibling(self.path, PARTIAL_SUFFIX)
        self.snapshot = _sibling(self.path, SNAPSHOT_SUFFIX)
        self.fingerprint = fingerprint
        self._lock = _lock(self.path)
        self._arrays: dict[str, zarr.Array] = {}
        self.published = self._published()
        if self.published:
            self.group, self.resumed = zarr.open_group(self.path, mode="r"), True
        else:
            self.group, self.resumed = self._open_or_create()

    def _published(self) -> bool:
        """Keep a finished store for this fingerprint (or restore it from its snapshot); drop any other."""
        if _finished_with(self.path, self.fingerprint):
            return True
        if self.path.exists():
            shutil.rmtree(self.path)  # an older store for other inputs; Snakemake asked for a new one
        if _finished_with(self.snapshot, self.fingerprint):
            os.replace(self.snapshot, self.path)
            return True
        if self.snapshot.exists():
            shutil.rmtree(self.snapshot)
        shutil.rmtree(_sibling(self.snapshot, ".tmp"), ignore_errors=True)  # a snapshot a kill cut short
        return False

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

    def array(self, name: str) -> zarr.Array:
        """Array ``name`` opened for writing whole shards, fill-valued ones included: a shard missing on
        disk then always means damage (:mod:`clipstore.verify`)."""
        if name not in self._arrays:
            self._arrays[name] = self.group[name].with_config(WRITE_EVERY_CHUNK)
        return self._arrays[name]

    @property
    def clips_done(self) -> set[int]:
        return set(self.group.attrs.get("clips_done", []))

    def mark_done(self, position: int) -> None:
        """Record that every array's data for the clip at ``position`` is written."""
        done = sorted(self.clips_done | {int(position)})
        self.group.attrs["clips_done"] = done

    @property
    def marked(self) -> bool:
        """The completion marker is set (published, or killed while publishing): :meth:`finish` ignores
        its attributes."""
        return self.published or self.group.attrs.get("complete") is True

    def finish(self, attributes: dict[str, Any], *, keep_snapshot: bool = False) -> Path:
        """Set the final attributes and the completion marker (last), then move into place. With
        ``keep_snapshot`` a hard-linked snapshot, taken before the rename, stays beside it until
        :meth:`drop_snapshot` (a job that publishes several stores drops them once all are out)."""
        if not self.published:
            if self.group.attrs.get("complete") is not True:  # else: killed while publishing, already final
                for name in self.group.array_keys():
                    self.group[name].attrs["complete"] = True
                self.group.attrs.update({**attributes, "fingerprint": self.fingerprint, "complete": True})
            if keep_snapshot:
                self._snapshot_from(self.partial)
            os.replace(self.partial, self.path)
            self.published = True
        elif keep_snapshot:
            self._snapshot_from(self.path)
        if not keep_snapshot:
            self.drop_snapshot()
        self._lock.release()
        return self.path

    def _snapshot_from(self, source: Path) -> None:
        """Hard-link ``source`` (complete) into the snapshot, atomically: a kill leaves no half snapshot."""
        if self.snapshot.exists():
            return  # this fingerprint's: another one was dropped when the writer started
        staging = _sibling(self.snapshot, ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, copy_function=os.link)
        os.replace(staging, self.snapshot)

    def drop_snapshot(self) -> None:
        if self.snapshot.exists():
            shutil.rmtree(self.snapshot)


class _Lock:
    """An exclusive ``flock`` on a lock file, held until :meth:`release` or the end of the process."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path, self.handle = path, handle

    def release(self) -> None:
        if not self.handle.closed:
            self.path.unlink(missing_ok=True)
            self.handle.close()


_HELD: dict[Path, _Lock] = {}  # this process's writer locks: a new writer of a store supersedes a dead one


def _lock(path: Path) -> _Lock:
    lock_path = _sibling(path, LOCK_SUFFIX)
    stale = _HELD.pop(lock_path.resolve(), None)
    if stale is not None:  # a writer of this process that died (an exception) without finishing
        stale.release()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the writer's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StoreError(f"{path} is being written by {holder} (lock {lock_path.name}); wait for that job to "
                         "end, or stop it (an orphan of a killed Snakemake), then rerun") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {os.uname().nodename}")
    handle.flush()
    _HELD[lock_path.resolve()] = lock = _Lock(lock_path, handle)
    return lock


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _finished_with(path: Path, fingerprint: dict[str, Any]) -> bool:
    """A complete store written for ``fingerprint`` sits at ``path``."""
    if not path.exists():
        return False
    try:
        attrs = zarr.open_group(path, mode="r").attrs
    except (FileNotFoundError, ValueError, KeyError):
        return False
    return attrs.get("complete") is True and attrs.get("fingerprint") == fingerprint


def open_complete(path: str | os.PathLike, *, what: str, rerun: str) -> zarr.Group:
    """Open a finished store read-only, or raise a StoreError saying what is wrong and what to rerun.

    ``what`` names the store kind in messages ("clip store"); ``rerun`` the job that makes it.
    """
    path = Path(path)
    if not path.exists():
        partial = _sibling(path, PARTIAL_SUFFIX)
        hint = f" (an unfinished {partial.name} exists: rerun its {rerun})" if partial.exists() else ""
        raise StoreError(f"{what} {path} does not exist{hint}")
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError) as err:
        raise StoreError(f"{path} is not a Zarr v3 {what}: {err}") from None
    if group.attrs.get("complete") is not True:
        raise StoreError(f"{what} {path} is incomplete (no completion marker); rerun its {rerun}")
    return group
