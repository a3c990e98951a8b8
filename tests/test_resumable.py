"""Crash safety by construction: every state a kill can leave is resumed or discarded by the rerun, a
published store is never thrown away for its own fingerprint, and a store has one writer at a time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clipstore import StoreError, open_clip_store, write_clip_store
from clipstore.resumable import ResumableStore
from clipstore.synthetic import SyntheticSpec, render_clip
from extractors.featurestore import open_feature_store
from extractors.job import run_extraction
from extractors.registry import resolve_model
from tests.conftest import REPO

SPEC = SyntheticSpec(clips=3, frames=2, height=16, width=16)


class Killed(RuntimeError):
    pass


def _write(path: Path, rendered: list[int]) -> Path:
    def render(i: int) -> dict:
        rendered.append(i)
        return render_clip(SPEC, i)

    return write_clip_store(path, render, clip_ids=["a", "b", "c"], splits=["train", "train", "val"],
                            class_names=[str(i) for i in range(6)], frames=2, height=16, width=16,
                            attributes={"seed": 1}, progress=False)


def test_kill_while_publishing_is_published_by_the_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the completion marker, before the rename: the rerun publishes without recomputing."""
    path, rendered = tmp_path / "s.zarr", []
    real_replace = os.replace

    def killed(src, dst):  # Zarr renames its own temporary files; only the publishing rename dies
        if Path(src).name == "s.zarr.partial":
            raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Killed):
        _write(path, rendered)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not path.exists() and (tmp_path / "s.zarr.partial").exists()
    rendered.clear()
    _write(path, rendered)
    assert rendered == [] and len(open_clip_store(path)) == 3


def test_a_published_store_is_kept_for_its_own_fingerprint(tmp_path: Path) -> None:
    path, rendered = tmp_path / "s.zarr", []
    _write(path, rendered)
    marker = path / "zarr.json"
    before = marker.stat().st_mtime_ns
    rendered.clear()
    _write(path, rendered)
    assert rendered == [] and marker.stat().st_mtime_ns == before


def test_a_snapshot_restores_a_store_snakemake_removed(tmp_path: Path) -> None:
    """A job publishing several stores keeps snapshots until all are out; a kill in between and Snakemake's
    removal of the killed job's outputs cost a rename, not a recomputation."""
    path = tmp_path / "t.zarr"
    first = ResumableStore(path, {"k": 1})
    first.group.attrs["payload"] = "kept"
    first.finish({"done": True}, keep_snapshot=True)
    assert (tmp_path / "t.zarr.done").exists()
    shutil.rmtree(path)  # Snakemake removes the outputs of a job it saw killed
    again = ResumableStore(path, {"k": 1})
    assert again.published and again.group.attrs["payload"] == "kept"
    again.finish({"done": True})
    assert path.exists() and not (tmp_path / "t.zarr.done").exists() and not (tmp_path / "t.zarr.lock").exists()
    other = ResumableStore(path, {"k": 2})  # another fingerprint: the old store goes, nothing is mixed
    assert not other.published and not other.resumed and not path.exists()


def test_extraction_leaves_no_snapshot_or_lock(small_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "shard-0.zarr"
    run_extraction(clip_store=small_store, outputs={None: out}, dataset="small",
                   model=resolve_model("px", {"family": "pixels"}), shard=0, clips_per_shard=4, seed=0,
                   progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-0.zarr"]
    assert open_feature_store([out]).frame_counts.tolist() == [5, 5, 5, 5]


HOLD = """
import sys, time
from clipstore.resumable import ResumableStore
store = ResumableStore(sys.argv[1], {"k": 1})
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    """An orphaned writer of a killed Snakemake still holds its store: the rerun's job stops with a message
    naming it instead of deleting its work; once it is gone, the rerun resumes."""
    path = tmp_path / "o.zarr"
    orphan = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert orphan.stdout.readline().strip() == "holding"
        with pytest.raises(StoreError, match=rf"o\.zarr is being written by process {orphan.pid} on .*wait for"):
            ResumableStore(path, {"k": 1})
        assert (tmp_path / "o.zarr.partial").exists()  # its work is untouched
    finally:
        orphan.send_signal(signal.SIGKILL)
        orphan.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the lock with the process
        try:
            store = ResumableStore(path, {"k": 1})
            break
        except StoreError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert store.resumed
    np.testing.assert_equal(sorted(store.clips_done), [])


def test_a_partial_store_without_its_clip_list_does_not_block_the_rerun(tmp_path: Path) -> None:
    """The state an older writer left when killed between clearing ``clips_done`` and the rename."""
    path, rendered = tmp_path / "s.zarr", []
    _write(path, rendered)
    os.replace(path, tmp_path / "s.zarr.partial")
    import zarr

    group = zarr.open_group(tmp_path / "s.zarr.partial", mode="r+")
    del group.attrs["clips_done"]
    rendered.clear()
    _write(path, rendered)
    assert len(open_clip_store(path)) == 3
