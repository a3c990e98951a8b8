"""Stores are verified on read: a foreign group, an array of another dtype or rank, a lost shard and
non-finite features each fail with one line naming the store, the clip and the array."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from clipstore import StoreError, open_clip_store, write_clip_store
from clipstore.synthetic import SyntheticSpec, render_clip
from extractors import ClipFeatures, FeatureStoreWriter, open_feature_store

SPEC = SyntheticSpec(clips=3, frames=2, height=16, width=16)


@pytest.fixture()
def clip_store(tmp_path: Path) -> Path:
    return write_clip_store(tmp_path / "c.zarr", lambda i: render_clip(SPEC, i), clip_ids=["a", "b", "c"],
                            splits=["train", "train", "val"], class_names=[str(i) for i in range(6)], frames=2,
                            height=16, width=16, attributes={}, progress=False)


def _replace_array(path: Path, name: str, values: np.ndarray) -> None:
    group = zarr.open_group(path, mode="r+")
    attrs = dict(group[name].attrs)
    group.create_array(name, data=values, overwrite=True, attributes=attrs)


def test_float_frames_and_a_missing_axis_are_refused_at_open(clip_store: Path) -> None:
    frames = open_clip_store(clip_store).zarr_array("frames")[:]
    _replace_array(clip_store, "frames", frames.astype(np.float32) / 255)
    with pytest.raises(StoreError, match=r"c\.zarr: array 'frames' has dtype float32, the layout says uint8"):
        open_clip_store(clip_store)
    _replace_array(clip_store, "frames", frames[:, :, :, :, 0])
    with pytest.raises(StoreError, match=r"array 'frames' has shape \(3, 2, 16, 16\), the layout says "
                                         r"\(3, 2, 16, 16, 3\)"):
        open_clip_store(clip_store)


def test_a_complete_group_that_is_not_a_clip_store(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "other.zarr", mode="w")
    group.attrs["complete"] = True
    with pytest.raises(StoreError, match=r"other\.zarr is not a clip store: it lacks attribute\(s\) \['class_names'"):
        open_clip_store(tmp_path / "other.zarr")


def test_a_lost_clip_shard_is_refused_not_read_as_fill(clip_store: Path) -> None:
    store = open_clip_store(clip_store)
    np.testing.assert_array_equal(store.select("instance", [2], [0])[0], render_clip(SPEC, 2)["instance"][[0]])
    shutil.rmtree(clip_store / "depth" / "c" / "1")
    store = open_clip_store(clip_store)
    with pytest.raises(StoreError, match=r"array 'depth' of clip 'b' is missing on disk"):
        store.select("depth", [1], [0])
    with pytest.raises(StoreError, match=r"array 'depth' of clip 'b' is missing on disk"):
        store.clip_arrays(1, ["frames", "depth"])


def _features(path: Path) -> Path:
    writer = FeatureStoreWriter(path, clip_index=[0, 1], layers=[0], fingerprint={})
    for position in range(2):
        writer.write_clip(position, ClipFeatures({0: np.zeros((3, 2, 2, 4), np.float32)}, np.arange(3)))
    return writer.finish({"model": "m", "timestep": None})


def test_feature_store_lost_shard_non_finite_values_and_layout(tmp_path: Path) -> None:
    path = _features(tmp_path / "f.zarr")
    store = open_feature_store([path])
    assert not store.read_frames(0, clip=0, positions=[0, 2]).any()  # all-zero features are stored, not lost
    shutil.rmtree(path / "layer_0" / "c" / "1")
    with pytest.raises(StoreError, match=r"f\.zarr: clip 1, layer 0 is missing on disk"):
        open_feature_store([path]).read_frames(0, clip=1, positions=[0])
    group = zarr.open_group(path, mode="r+")
    group["layer_0"][0, 1] = np.full((2, 2, 4), np.nan, np.float16)
    with pytest.raises(StoreError, match=r"f\.zarr: clip 0, layer 0: 16 non-finite value\(s\) read"):
        open_feature_store([path]).read_frames(0, clip=0, positions=[1])
    _replace_array(path, "layer_0", np.zeros((2, 3, 2, 2, 4), np.float32))
    with pytest.raises(StoreError, match=r"array 'layer_0' has dtype float32, the layout says float16"):
        open_feature_store([path])
