"""The canonical clip store: layout, completion marker, resume after a kill, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from clipstore import CLIP_ARRAYS, StoreError, open_clip_store, write_clip_store
from clipstore.synthetic import SyntheticSpec, render_clip
from tests.conftest import SMALL_SPEC


def test_layout_matches_design(small_store: Path) -> None:
    store = open_clip_store(small_store)
    n, t, h, w = SMALL_SPEC.clips, SMALL_SPEC.frames, SMALL_SPEC.height, SMALL_SPEC.width
    c = len(store.class_names)
    expected = {"frames": (n, t, h, w, 3), "depth": (n, t, h, w), "points": (n, t, h, w, 3),
                "confidence": (n, t, h, w), "instance": (n, t, h, w), "semantic": (n, t, h, w),
                "tag_counts": (n, t, c), "extrinsics": (n, t, 3, 4), "intrinsics": (n, t, 3, 3)}
    for name, shape in expected.items():
        array = store.zarr_array(name)
        assert array.shape == shape, name
        assert array.dtype == np.dtype(CLIP_ARRAYS[name].dtype), name
        assert array.chunks[:2] == (1, 1), f"{name} must be chunked one frame per chunk"
        assert array.metadata.dimension_names[:2] == ("clip", "frame")
    assert sorted(set(store.splits)) == ["train", "val"]
    assert store.attrs["source_kind"] == "synthetic" and store.attrs["generator_seed"] == SMALL_SPEC.seed
    assert len(store.clip_ids) == n


def test_stored_clip_equals_rendered_clip(small_store: Path) -> None:
    store = open_clip_store(small_store)
    clip = render_clip(SMALL_SPEC, 5)
    for name in CLIP_ARRAYS:
        np.testing.assert_array_equal(store.zarr_array(name)[5], clip[name], err_msg=name)
    assert store.array("depth").chunksize[:2] == (1, 1)  # lazy dask view keeps per-frame chunks


def test_missing_array_error_names_store_array_and_task(small_store: Path, tmp_path: Path) -> None:
    spec = SyntheticSpec(clips=2, frames=2, height=16, width=16)
    path = write_clip_store(tmp_path / "nodepth.zarr", lambda i: render_clip(spec, i), clip_ids=["a", "b"],
                            splits=["train", "val"], class_names=["x"] * 6, frames=2, height=16, width=16,
                            attributes={}, arrays=["frames", "tag_counts"], progress=False)
    store = open_clip_store(path)
    with pytest.raises(StoreError, match=r"nodepth\.zarr lacks array\(s\) \['depth'\] needed by task 'depth'"):
        store.require(["depth"], needed_by="task 'depth'")


def test_open_refuses_missing_and_incomplete(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_clip_store(tmp_path / "nothing.zarr")
    group = zarr.open_group(tmp_path / "half.zarr", mode="w")
    group.attrs["complete"] = False
    with pytest.raises(StoreError, match=r"half\.zarr is incomplete"):
        open_clip_store(tmp_path / "half.zarr")


class Killed(RuntimeError):
    pass


def _write(path: Path, spec: SyntheticSpec, render) -> Path:
    return write_clip_store(path, render, clip_ids=[str(i) for i in range(spec.clips)],
                            splits=["train"] * (spec.clips - 1) + ["val"], class_names=[str(i) for i in range(6)],
                            frames=spec.frames, height=spec.height, width=spec.width, attributes={"seed": 1},
                            progress=False)


def test_killed_write_leaves_no_store_and_rerun_resumes(tmp_path: Path) -> None:
    spec = SyntheticSpec(clips=4, frames=2, height=16, width=16)
    path = tmp_path / "resume.zarr"
    rendered: list[int] = []

    def dies_at_clip_2(i: int) -> dict:
        if i == 2:
            raise Killed
        rendered.append(i)
        return render_clip(spec, i)

    with pytest.raises(Killed):
        _write(path, spec, dies_at_clip_2)
    assert not path.exists(), "a killed write must leave nothing at the final path"
    with pytest.raises(StoreError, match=r"unfinished resume\.zarr\.partial exists"):
        open_clip_store(path)

    rendered.clear()
    _write(path, spec, lambda i: rendered.append(i) or render_clip(spec, i))
    assert rendered == [2, 3], "the rerun must skip the clips the killed run finished"
    store = open_clip_store(path)
    for i in range(4):
        np.testing.assert_array_equal(store.zarr_array("depth")[i], render_clip(spec, i)["depth"])


def test_partial_from_other_inputs_is_discarded(tmp_path: Path) -> None:
    spec = SyntheticSpec(clips=3, frames=2, height=16, width=16)
    path = tmp_path / "s.zarr"
    with pytest.raises(Killed):
        _write(path, spec, lambda i: (_ for _ in ()).throw(Killed) if i == 1 else render_clip(spec, i))
    other = SyntheticSpec(clips=3, frames=3, height=16, width=16)  # a different fingerprint
    rendered: list[int] = []
    _write(path, other, lambda i: rendered.append(i) or render_clip(other, i))
    assert rendered == [0, 1, 2]
    assert open_clip_store(path).zarr_array("frames").shape[1] == 3


def test_wrong_clip_shape_names_clip_and_array(tmp_path: Path) -> None:
    spec = SyntheticSpec(clips=2, frames=2, height=16, width=16)

    def bad(i: int) -> dict:
        clip = render_clip(spec, i)
        clip["depth"] = clip["depth"][:, :8]
        return clip

    with pytest.raises(StoreError, match=r"clip '0': array 'depth' has shape \(2, 8, 16\)"):
        _write(tmp_path / "bad.zarr", spec, bad)
    assert not (tmp_path / "bad.zarr").exists()


def test_select_reads_the_requested_clips_and_frames(small_store: Path) -> None:
    store = open_clip_store(small_store)
    full = store.zarr_array("depth")[:]
    np.testing.assert_array_equal(store.select("depth", [5, 1], [4, 0]), full[[5, 1]][:, [4, 0]])
    counts = store.select("tag_counts", [2])
    assert counts.shape == (1, SMALL_SPEC.frames, len(store.class_names))
    np.testing.assert_array_equal(counts[0], store.zarr_array("tag_counts")[2])
