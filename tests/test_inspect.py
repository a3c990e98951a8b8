"""`python -m clipstore inspect`: what a clip or feature store holds, unfinished stores included."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipstore import StoreError
from clipstore.dl3dv import DL3DVReader
from clipstore.ingest import StoreOptions, ingest
from clipstore.inspect import describe
from clipstore.synthetic import SyntheticSpec
from extractors.base import ClipFeatures
from extractors.featurestore import FeatureStoreWriter
from tests.layouts import write_dl3dv


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("inspect")
    write_dl3dv(base / "dl3dv", SyntheticSpec(clips=3, frames=9, height=16, width=16), ["train", "train", "val"],
                lengths=[9, 6, 9])
    (base / "dl3dv" / "1K" / f"0001{'ab' * 8}.sft").write_bytes(b"broken")
    return ingest(base / "d.zarr", DL3DVReader(base / "dl3dv"),
                  StoreOptions(ground_truth="query", on_bad_clip="skip"), progress=False)


def test_clip_store_report(store: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "clipstore", "inspect", str(store)], capture_output=True,
                            text=True, check=True)
    report = result.stdout
    assert f"clip store {store} (complete)" in report
    assert "source: dl3dv" in report and "clips: 3 (train 2, val 1), skipped 1" in report
    assert "frames per clip: 9 to 9, mean 9.0 (store holds up to 9)" in report
    assert "ground truth: at frames [0, 1, 5] only" in report and "frame size: 16 x 16 pixels" in report
    assert re.search(r"depth +\(3, 3, 16, 16\) +float32  ground truth at frames \[0, 1, 5\]", report)
    assert re.search(r"frames +\(3, 9, 16, 16, 3\) +uint8\n", report)
    assert f"skipped 0001{'ab' * 8}: " in report and "not a readable safetensors file" in report


def test_feature_store_report_and_unfinished_stores(tmp_path: Path) -> None:
    folder = tmp_path / "features" / "model" / "t500"
    for shard, clips in enumerate([[0, 1], [2]]):
        writer = FeatureStoreWriter(folder / f"shard-{shard}.zarr", clip_index=clips, layers=[3], fingerprint={})
        for position in range(len(clips)):
            frames = np.array([0, 1, 5][: 3 - position])
            writer.write_clip(position, ClipFeatures({3: np.ones((len(frames), 2, 2, 4))}, frames))
        if shard == 0:
            writer.finish({"model": "m", "family": "wan-t2v", "paradigm": "vgm", "timestep": 500, "sigma": 0.5,
                           "random_init": True, "checkpoint": None})
    report = describe(folder)
    assert "(2 shard(s), UNFINISHED)" in report and "shard-1.zarr: UNFINISHED (shard-1.zarr.partial: 1 clips" in report
    assert "model m (RANDOM INIT): family wan-t2v" in report and "timestep: 500 (sigma 0.5)" in report
    assert "feature frames per clip: 3 at clip frames [0, 1, 5]" in report and "shorter clips: 1" in report
    assert re.search(r"layer_3 +\(2, 3, 2, 2, 4\) +float16", report)
    assert "compression: lossless" in report


def test_feature_store_report_says_when_features_are_lossy(tmp_path: Path) -> None:
    path = tmp_path / "shard-0.zarr"
    writer = FeatureStoreWriter(path, clip_index=[0], layers=[0], fingerprint={},
                                compression={"codec": "bitround", "keepbits": 3})
    writer.write_clip(0, ClipFeatures({0: np.ones((1, 2, 2, 4))}, np.array([0])))
    writer.finish({"model": "m"})
    assert "compression: LOSSY (codec bitround, keepbits 3; relative error <= 0.0625)" in describe(path)
    with pytest.raises(StoreError, match="does not exist"):
        describe(tmp_path / "nothing.zarr")
    result = subprocess.run([sys.executable, "-m", "clipstore", "inspect", str(tmp_path / "nothing.zarr")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
