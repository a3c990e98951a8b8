"""Lossy compression of cached features (extractors/codecs.py): the spec, the error bound, the attributes, reading
back, resuming under another codec, and the model config that carries it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from clipstore import StoreError
from extractors import ClipFeatures, FeatureStoreWriter, open_feature_store, resolve_model
from extractors.base import OptionError
from extractors.codecs import describe, normalise_compression, round_trip
from extractors.job import run_extraction
from extractors.registry import ModelConfig

BITROUND = {"codec": "bitround", "keepbits": 4}
# zarr-python says so whenever a numcodecs codec is built; docs/stores.md states it for lossy stores
pytestmark = pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3 specification")


def _features(seed: int, frames: int = 3) -> ClipFeatures:
    """Heavy-tailed values spanning float16's normal and subnormal range, both signs."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((frames, 4, 5, 8)) * np.exp(rng.uniform(-12, 9, size=8))
    return ClipFeatures({0: values.astype(np.float32)}, np.arange(frames))


def _write(path: Path, compression=None, clips=(0, 1)) -> FeatureStoreWriter:
    writer = FeatureStoreWriter(path, clip_index=clips, layers=[0], fingerprint={"model": "m"},
                                compression=compression)
    for position in writer.pending:
        writer.write_clip(position, _features(clips[position]))
    return writer


def _stored(path: Path, clip: int) -> np.ndarray:
    return open_feature_store([path]).read(0, [clip])[0]


def test_default_is_lossless_and_bit_exact(tmp_path: Path) -> None:
    for spec in (None, {"codec": "lossless"}):
        path = _write(tmp_path / f"{spec}.zarr", spec).finish({"model": "m"})
        expected = _features(1).layers[0].astype(np.float16)
        assert _stored(path, 1).view(np.uint16).tolist() == expected.view(np.uint16).tolist()
        attrs = zarr.open_group(path, mode="r").attrs
        assert attrs["compression"]["codec"] == "lossless" and attrs["compression"]["lossy"] is False
        assert "compression" not in attrs["fingerprint"], "lossless keeps the fingerprint stores had before"


@pytest.mark.parametrize("keepbits", [0, 3, 7, 9])
def test_bitround_error_is_bounded_by_keepbits(tmp_path: Path, keepbits: int) -> None:
    spec = {"codec": "bitround", "keepbits": keepbits}
    path = _write(tmp_path / "s.zarr", spec).finish({"model": "m"})
    exact = _features(0).layers[0].astype(np.float16).astype(np.float64)
    stored = _stored(path, 0).astype(np.float64)
    assert np.isfinite(stored).all()
    # round to nearest: half a unit in the last kept bit, relative for normal float16, absolute below 2^-14
    error = np.abs(stored - exact)
    assert (error <= 2.0 ** -(keepbits + 1) * np.maximum(np.abs(exact), 2.0 ** -14)).all()
    normal = np.abs(exact) >= 2.0 ** -14
    assert (error[normal] / np.abs(exact[normal])).max() <= 2.0 ** -keepbits
    assert (error > 0).any(), "the values were rounded"
    np.testing.assert_array_equal(stored, round_trip(spec, exact), "the store holds what the codec computes")


def test_attributes_and_array_metadata_record_the_codec(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.zarr", BITROUND).finish({"model": "m"})
    group = zarr.open_group(path, mode="r")
    recorded = group.attrs["compression"]
    assert recorded == json.loads(json.dumps(describe(BITROUND)))
    assert recorded["codec"] == "bitround" and recorded["keepbits"] == 4 and recorded["lossy"] is True
    assert recorded["max_relative_error"] == 2.0 ** -5
    assert recorded["filters"] == [{"name": "numcodecs.bitround", "configuration": {"keepbits": 4}}]
    assert recorded["compressors"][0]["name"] == "blosc"
    metadata = json.loads((path / "layer_0" / "zarr.json").read_text())
    inner = [codec["name"] for codec in metadata["codecs"][0]["configuration"]["codecs"]]
    assert inner == ["numcodecs.bitround", "bytes", "blosc"]
    store = open_feature_store([path])  # the reader needs nothing new: zarr decodes
    assert store.read_frames(0, clip=1, positions=[2]).shape == (1, 4, 5, 8)
    assert store.layer(0).compute().dtype == np.float16


def test_rounding_into_inf_is_refused(tmp_path: Path) -> None:
    """65408 fits float16 but rounds to inf at keepbits 7 (the mantissa carries into the exponent)."""
    writer = FeatureStoreWriter(tmp_path / "s.zarr", clip_index=[0], layers=[0], fingerprint={},
                                compression={"codec": "bitround", "keepbits": 7})
    with pytest.raises(StoreError, match=r"clip 0, layer 0: feature magnitude 6\.541e\+04 would be stored as inf"):
        writer.write_clip(0, ClipFeatures({0: np.full((1, 1, 1, 1), 65408.0)}, np.arange(1)))
    writer.write_clip(0, ClipFeatures({0: np.full((1, 1, 1, 1), 65376.0)}, np.arange(1)))


def test_another_codec_restarts_a_partial_store_and_replaces_a_finished_one(tmp_path: Path) -> None:
    """ResumableStore discards a partial or finished store whose fingerprint differs: never mixed codecs."""
    path = tmp_path / "s.zarr"
    partial = FeatureStoreWriter(path, clip_index=[0, 1], layers=[0], fingerprint={"model": "m"})
    partial.write_clip(0, _features(0))  # killed after one clip
    resumed = FeatureStoreWriter(path, clip_index=[0, 1], layers=[0], fingerprint={"model": "m"},
                                 compression=BITROUND)
    assert resumed.pending == [0, 1], "a lossless partial store is not resumed by a lossy writer"
    for position in resumed.pending:
        resumed.write_clip(position, _features(position))
    resumed.finish({"model": "m"})
    assert zarr.open_group(path, mode="r").attrs["compression"]["keepbits"] == 4
    again = FeatureStoreWriter(path, clip_index=[0, 1], layers=[0], fingerprint={"model": "m"},
                               compression={"codec": "bitround", "keepbits": 4})
    assert again.store.published and again.pending == [], "the same spec keeps the finished store"
    again.finish({})
    lossless = _write(path, None)
    assert not lossless.store.published and lossless.pending == [], "another spec writes it again"
    lossless.finish({"model": "m"})
    assert zarr.open_group(path, mode="r").attrs["compression"]["lossy"] is False
    expected = _features(1).layers[0].astype(np.float16)
    np.testing.assert_array_equal(_stored(path, 1), expected)


@pytest.mark.parametrize(("spec", "message"), [
    ({"codec": "zfp"}, r"model 'wan': compression codec='zfp' is unknown; known: \['lossless', 'bitround'\]"),
    ({"keepbits": 4}, r"model 'wan': compression \{'keepbits': 4\} lacks 'codec'; known: \['lossless', 'bitround'\]"),
    ({"codec": "bitround"}, r"model 'wan': compression codec 'bitround' needs keepbits"),
    ({"codec": "bitround", "keepbits": 10}, r"model 'wan': compression keepbits=10 must be an integer 0\.\.9"),
    ({"codec": "bitround", "keepbits": "7"}, r"model 'wan': compression keepbits='7' must be an integer"),
    ({"codec": "bitround", "keepbits": True}, r"model 'wan': compression keepbits=True must be an integer"),
    ({"codec": "bitround", "keepbits": 4, "level": 3},
     r"model 'wan': compression key\(s\) \['level'\] do not apply to codec 'bitround'; "
     r"it takes \['codec', 'keepbits'\]"),
    ({"codec": "lossless", "keepbits": 4}, r"key\(s\) \['keepbits'\] do not apply to codec 'lossless'"),
    ("bitround", r"model 'wan': compression='bitround' must be a mapping"),
])
def test_bad_specs_name_the_model_and_the_value(spec, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        resolve_model("wan", {"family": "pixels", "compression": spec})


def test_the_model_config_carries_the_spec_into_the_job_and_its_fingerprint(small_store: Path,
                                                                            tmp_path: Path) -> None:
    lossy = resolve_model("px", {"family": "pixels", "compression": {"codec": "bitround", "keepbits": 6}})
    assert lossy.compression == {"codec": "bitround", "keepbits": 6}
    assert lossy.to_json()["compression"] == {"codec": "bitround", "keepbits": 6}
    assert ModelConfig.from_json(json.loads(json.dumps(lossy.to_json()))) == lossy
    plain = resolve_model("px", {"family": "pixels"})
    assert plain.compression is None and "compression" not in plain.to_json(), "lossless leaves jobs as they were"
    assert resolve_model("px", {"family": "pixels", "compression": {"codec": "lossless"}}) == plain
    assert ModelConfig.from_json(plain.to_json()) == plain
    path = run_extraction(clip_store=small_store, outputs={None: tmp_path / "px.zarr"}, dataset="small",
                          model=lossy, shard=0, clips_per_shard=2, seed=0, progress=False)[0]
    attrs = zarr.open_group(path, mode="r").attrs
    assert attrs["compression"]["keepbits"] == 6 and attrs["fingerprint"]["model"]["compression"]["keepbits"] == 6
    assert open_feature_store([path]).read(0, [1]).dtype == np.float16


def test_normalised_spec_is_canonical() -> None:
    assert normalise_compression(None, owner="m") is None
    assert normalise_compression({"keepbits": 3, "codec": "bitround"}, owner="m") == {"codec": "bitround",
                                                                                     "keepbits": 3}
