"""The extraction job: shards of clips, provenance, and resuming after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipstore import open_clip_store
from extractors import open_feature_store, resolve_model
from extractors.baselines import PixelsExtractor
from extractors.job import num_shards, run_extraction, shard_clips
from tests.conftest import SMALL_SPEC


def test_shards_partition_the_clips() -> None:
    assert num_shards(10, 4) == 3
    assert [shard_clips(10, 4, k) for k in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="shard 3 out of range: 10 clips in 3 shards"):
        shard_clips(10, 4, 3)


def _extract(small_store: Path, out: Path, shard: int = 1) -> Path:
    model = resolve_model("rp", {"family": "random-patch", "layers": [0, -1], "options": {"channels": 8}})
    return run_extraction(clip_store=small_store, outputs={None: out}, dataset="small", model=model,
                          shard=shard, clips_per_shard=3, seed=0, progress=False)[0]


def test_store_records_provenance(small_store: Path, tmp_path: Path) -> None:
    store = open_feature_store([_extract(small_store, tmp_path / "shard-1.zarr")])
    np.testing.assert_array_equal(store.clip_index, [3, 4, 5])
    np.testing.assert_array_equal(store.frame_index, np.arange(SMALL_SPEC.frames))
    assert store.layers == [0, 1]
    attrs = store.attrs
    for key, value in {"model": "rp", "family": "random-patch", "paradigm": "baseline", "timestep": None,
                       "seed": 0, "dataset": "small", "random_init": False, "compute_dtype": "float32",
                       "input_frames": SMALL_SPEC.frames,
                       "input_resolution": [SMALL_SPEC.height, SMALL_SPEC.width]}.items():
        assert attrs[key] == value, key
    assert attrs["options"]["channels"] == 8 and "zarr" in attrs["library_versions"]


class Killed(RuntimeError):
    pass


def test_killed_job_resumes_from_its_last_finished_clip(small_store: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "shard-0.zarr"
    model = resolve_model("px", {"family": "pixels"})
    calls: list[int] = []
    real_extract = PixelsExtractor.extract

    def dies_on_third_clip(self, frames, layers, timestep, clip):
        calls.append(len(calls))
        if len(calls) == 3:
            raise Killed
        return real_extract(self, frames, layers, timestep, clip=clip)

    monkeypatch.setattr(PixelsExtractor, "extract", dies_on_third_clip)
    run = dict(clip_store=small_store, outputs={None: out}, dataset="small", model=model, shard=0,
               clips_per_shard=4, seed=0, progress=False)
    with pytest.raises(Killed):
        run_extraction(**run)
    assert not out.exists()
    calls.clear()
    monkeypatch.setattr(PixelsExtractor, "extract", lambda self, *a, **k: calls.append(1) or real_extract(self, *a, **k))
    store = open_feature_store(run_extraction(**run))
    assert len(calls) == 2, "only the two clips the killed job had not finished are extracted again"
    first_clip = open_clip_store(small_store).zarr_array("frames")[0]
    fresh = real_extract(PixelsExtractor("px", {}), first_clip, (0,), None)
    np.testing.assert_array_equal(store.layer(0)[0].compute(), fresh.layers[0].astype(np.float16))
