"""The feature store: layout, float16 safety, completion marker, resume, multi-shard reads."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

from clipstore import StoreError
from extractors import ClipFeatures, FeatureStoreWriter, open_feature_store


def _features(seed: int, frames: int = 3, layers=(0, 2)) -> ClipFeatures:
    rng = np.random.default_rng(seed)
    return ClipFeatures({layer: rng.standard_normal((frames, 4, 5, 6)).astype(np.float32) for layer in layers},
                        np.arange(frames) * 4)


def _write(path: Path, clips=(7, 8), layers=(0, 2)) -> Path:
    writer = FeatureStoreWriter(path, clip_index=clips, layers=layers, fingerprint={"model": "m"})
    for position, clip in enumerate(clips):
        writer.write_clip(position, _features(clip, layers=layers))
    return writer.finish({"model": "m", "timestep": None})


def test_layout_and_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "shard-0.zarr")
    group = zarr.open_group(path, mode="r")
    array = group["layer_2"]
    assert array.shape == (2, 3, 4, 5, 6) and array.dtype == np.float16
    assert array.chunks == (1, 1, 4, 5, 6), "one chunk per feature frame"
    assert array.shards == (1, 3, 4, 5, 6), "one shard per clip"
    assert array.metadata.dimension_names == ("clip", "frame", "y", "x", "channel")
    assert group.attrs["complete"] is True and array.attrs["complete"] is True
    store = open_feature_store([path])
    np.testing.assert_array_equal(store.frame_index, [0, 4, 8])
    np.testing.assert_array_equal(store.clip_index, [7, 8])
    expected = _features(8).layers[2].astype(np.float16)
    np.testing.assert_array_equal(store.layer(2)[store.rows_of([8])[0]].compute(), expected)
    # dask opens the stored array directly, thanks to the standard v3 metadata
    assert da.from_zarr(str(path), component="layer_0").shape == (2, 3, 4, 5, 6)


def test_shards_read_as_one_store_in_clip_order(tmp_path: Path) -> None:
    a = _write(tmp_path / "shard-0.zarr", clips=(0, 1))
    b = _write(tmp_path / "shard-1.zarr", clips=(2,))
    store = open_feature_store([a, b])
    np.testing.assert_array_equal(store.clip_index, [0, 1, 2])
    assert store.layer(0).shape[0] == 3
    np.testing.assert_array_equal(store.rows_of([2, 0]), [2, 0])
    with pytest.raises(StoreError, match=r"clips \[5\] were not extracted"):
        store.rows_of([5])
    with pytest.raises(StoreError, match=r"no layer 1; it has \[0, 2\]"):
        store.layer(1)


def test_overflow_and_nan_are_refused_not_stored(tmp_path: Path) -> None:
    writer = FeatureStoreWriter(tmp_path / "s.zarr", clip_index=[3], layers=[0], fingerprint={})
    features = _features(0, layers=(0,))
    features.layers[0][0, 0, 0, 0] = 1e6
    with pytest.raises(StoreError, match=r"clip 3, layer 0: feature magnitude 1e\+06 exceeds the float16 range"):
        writer.write_clip(0, features)
    features.layers[0][0, 0, 0, 0] = np.nan
    with pytest.raises(StoreError, match="clip 3, layer 0: features contain NaN or inf"):
        writer.write_clip(0, features)
    assert not (tmp_path / "s.zarr").exists()


def test_incomplete_store_is_refused(tmp_path: Path) -> None:
    writer = FeatureStoreWriter(tmp_path / "shard-0.zarr", clip_index=[0, 1], layers=[0], fingerprint={})
    writer.write_clip(0, _features(0, layers=(0,)))  # then the job is killed
    with pytest.raises(StoreError, match=r"shard-0\.zarr does not exist \(an unfinished shard-0\.zarr\.partial"):
        open_feature_store([tmp_path / "shard-0.zarr"])
    group = zarr.open_group(tmp_path / "fake.zarr", mode="w")
    group.attrs["complete"] = False
    with pytest.raises(StoreError, match=r"fake\.zarr is incomplete \(no completion marker\)"):
        open_feature_store([tmp_path / "fake.zarr"])
    with pytest.raises(StoreError, match="never written"):
        writer.finish({})


def test_resume_keeps_finished_clips(tmp_path: Path) -> None:
    path = tmp_path / "shard-0.zarr"
    first = FeatureStoreWriter(path, clip_index=[0, 1, 2], layers=[0], fingerprint={"m": 1})
    first.write_clip(0, _features(0, layers=(0,)))
    first.write_clip(1, _features(1, layers=(0,)))
    resumed = FeatureStoreWriter(path, clip_index=[0, 1, 2], layers=[0], fingerprint={"m": 1})
    assert resumed.store.resumed and resumed.pending == [2]
    resumed.write_clip(2, _features(2, layers=(0,)))
    store = open_feature_store([resumed.finish({"model": "m"})])
    for clip in range(3):
        np.testing.assert_array_equal(store.layer(0)[clip].compute(),
                                      _features(clip, layers=(0,)).layers[0].astype(np.float16))
    fresh = FeatureStoreWriter(tmp_path / "other.zarr", clip_index=[0], layers=[0], fingerprint={"m": 1})
    assert not fresh.store.resumed


def test_mismatched_clip_is_rejected_with_its_name(tmp_path: Path) -> None:
    writer = FeatureStoreWriter(tmp_path / "s.zarr", clip_index=[4, 9], layers=[0], fingerprint={})
    writer.write_clip(0, _features(0, layers=(0,)))
    shifted = _features(1, layers=(0,))
    shifted.frame_index = shifted.frame_index + 1
    with pytest.raises(StoreError, match=r"clip 9: frame_index \[1, 5, 9\] is not a prefix"):
        writer.write_clip(1, shifted)
    with pytest.raises(StoreError, match=r"clip 9: extractor returned no features for layer\(s\) \[0\]"):
        writer.write_clip(1, ClipFeatures({}, np.arange(3)))


def test_shorter_and_skipped_clips_keep_their_own_feature_frames(tmp_path: Path) -> None:
    """A shorter clip stores a prefix of frame_index, a skipped clip none; a shard of skipped clips only
    still reads as part of the store, and no frame past a clip's count is ever returned."""
    first = FeatureStoreWriter(tmp_path / "a.zarr", clip_index=[0, 1, 2], layers=[0], fingerprint={})
    first.write_clip(0, _features(0, frames=3, layers=(0,)))
    first.write_clip(1, _features(1, frames=2, layers=(0,)))
    first.write_clip(2, None)
    first.finish({"model": "m", "timestep": None})
    skipped = FeatureStoreWriter(tmp_path / "b.zarr", clip_index=[3], layers=[0], fingerprint={})
    skipped.write_clip(0, None)
    skipped.finish({"model": "m", "timestep": None})
    store = open_feature_store([tmp_path / "a.zarr", tmp_path / "b.zarr"])
    assert store.frame_index.tolist() == [0, 4, 8] and store.frame_counts.tolist() == [3, 2, 0, 0]
    np.testing.assert_array_equal(store.read_frames(0, clip=1, positions=[0, 1]),
                                  _features(1, frames=2, layers=(0,)).layers[0].astype(np.float16))
    message = r"clip 1 has 2 feature frames \(clip frames \[0, 4\]\); feature frame\(s\) \[2\]"
    with pytest.raises(StoreError, match=message):
        store.read_frames(0, clip=1, positions=[2])
    with pytest.raises(StoreError, match="clip 3 has 0 feature frames"):
        store.read_frames(0, clip=3, positions=[0])
    assert store.layer(0).shape == (4, 3, *_features(0, layers=(0,)).layers[0].shape[1:])
    longer = FeatureStoreWriter(tmp_path / "c.zarr", clip_index=[0, 1], layers=[0], fingerprint={})
    longer.write_clip(0, _features(0, frames=2, layers=(0,)))
    with pytest.raises(StoreError, match=r"frame_index \[0, 4, 8\] is not a prefix of the first clip's \[0, 4\]"):
        longer.write_clip(1, _features(1, frames=3, layers=(0,)))
