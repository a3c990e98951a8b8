"""The ``video`` dataset kind: tiny videos (PyAV) and PNG folders (Pillow) ingested into clip stores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from clipstore import open_clip_store
from clipstore import video as video_module
from clipstore.errors import BadClip, StoreError
from clipstore.ingest import StoreOptions, ingest
from clipstore.store import ClipStore
from clipstore.video import VideoReader

HEIGHT, WIDTH = 32, 48
TOLERANCE = 8  # mean absolute difference allowed after lossy encoding of flat colour blocks


def colour(i: int) -> tuple[int, int, int]:
    """A distinct, well separated colour per frame number."""
    return (20 * i + 10) % 256, 250 - 20 * i, (90 + 50 * i) % 256


def block_frame(i: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Left half in frame i's colour, right half a fixed colour (so left/right order is checked too)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:, : width // 2] = colour(i)
    frame[:, width // 2:] = (200, 40, 120)
    return frame


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder
    return path


def random_frames(count: int, height: int = 20, width: int = 30, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def write_pngs(folder: Path, frames: list[np.ndarray]) -> Path:
    """Frames as 0000.png, 0001.png, ... written last first (so name order is not creation order)."""
    folder.mkdir(parents=True)
    for i in reversed(range(len(frames))):
        Image.fromarray(frames[i]).save(folder / f"{i:04d}.png")
    return folder


def ingest_root(root: Path, tmp_path: Path, options: StoreOptions | None = None, **reader: object) -> ClipStore:
    path = ingest(tmp_path / "store.zarr", VideoReader(root, **reader), options or StoreOptions(), progress=False)
    return open_clip_store(path)


def clip_frames(store: ClipStore, clip_id: str) -> np.ndarray:
    arrays, _ = store.clip_arrays(store.clip_ids.index(clip_id), ["frames"])
    return np.asarray(arrays["frames"])


def assert_close(decoded: np.ndarray, expected: np.ndarray) -> None:
    assert decoded.shape == expected.shape
    diff = np.abs(decoded.astype(np.int16) - expected.astype(np.int16)).mean()
    assert diff < TOLERANCE, diff


def test_image_folders_are_stored_exactly(tmp_path: Path) -> None:
    root = tmp_path / "data"
    first, second = random_frames(4, seed=1), random_frames(4, seed=2)
    write_pngs(root / "b", first)
    write_pngs(root / "a", second)
    write_pngs(root / ".hidden", random_frames(2, seed=3))  # hidden: not a clip
    (root / "notes.txt").write_text("not a clip")
    (root / "a" / "readme.txt").write_text("not a frame")

    store = ingest_root(root, tmp_path)
    assert store.clip_ids == ["a", "b"]
    assert store.splits.tolist() == ["val", "val"]
    assert store.frame_counts.tolist() == [4, 4]
    np.testing.assert_array_equal(clip_frames(store, "a"), np.stack(second))
    np.testing.assert_array_equal(clip_frames(store, "b"), np.stack(first))
    assert store.attrs["reader_options"] == {"frames": None, "resize": None, "split_file": None}
    assert store.attrs["clip_metadata"]["a"] == {"source_frames": 4}


def test_non_rgb_images_are_converted(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "modes").mkdir(parents=True)
    rgb = random_frames(1, seed=4)[0]
    images = [Image.fromarray(rgb).convert(mode) for mode in ("L", "RGBA", "P")]
    for i, image in enumerate(images):
        image.save(root / "modes" / f"{i}.png")

    store = ingest_root(root, tmp_path)
    expected = np.stack([np.asarray(Image.open(root / "modes" / f"{i}.png").convert("RGB")) for i in range(3)])
    np.testing.assert_array_equal(clip_frames(store, "modes"), expected)


@pytest.mark.parametrize(("codec", "name"), [("libx264", "clip.mp4"), ("mpeg4", "clip.avi"),
                                             ("libx264", "clip.MKV"), ("libvpx-vp9", "clip.webm")])
def test_videos_are_decoded(tmp_path: Path, codec: str, name: str) -> None:
    frames = [block_frame(i) for i in range(10)]
    (tmp_path / "data").mkdir()
    write_video(tmp_path / "data" / name, frames, codec)

    store = ingest_root(tmp_path / "data", tmp_path)
    assert store.clip_ids == ["clip"]
    assert store.frame_counts.tolist() == [10]
    stored = clip_frames(store, "clip")
    for i in range(10):
        assert_close(stored[i], frames[i])
    assert store.attrs["clip_metadata"]["clip"] == {"source_frames": 10, "fps": 10.0}


def test_frames_keeps_evenly_spaced_frames_and_short_clips_whole(tmp_path: Path) -> None:
    root = tmp_path / "data"
    long, short = random_frames(11, seed=5), random_frames(3, seed=6)
    write_pngs(root / "long", long)
    write_pngs(root / "short", short)

    store = ingest_root(root, tmp_path, frames=5)
    assert store.frame_counts.tolist() == [5, 3]
    # round(linspace(0, 10, 5)) = 0, 2.5, 5, 7.5, 10 rounded half to even
    np.testing.assert_array_equal(clip_frames(store, "long"), np.stack([long[i] for i in (0, 2, 5, 8, 10)]))
    np.testing.assert_array_equal(clip_frames(store, "short"), np.stack(short))
    assert store.zarr_array("frames").shape[1] == 5  # the short clip's rows 3 and 4 are padding, never read
    assert store.attrs["clip_metadata"]["short"] == {"source_frames": 3}


def test_frames_samples_videos(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    frames = [block_frame(i) for i in range(12)]
    write_video(tmp_path / "data" / "v.mp4", frames)

    store = ingest_root(tmp_path / "data", tmp_path, frames=4)
    stored = clip_frames(store, "v")
    assert stored.shape[0] == 4
    for row, source in enumerate((0, 4, 7, 11)):  # round(linspace(0, 11, 4))
        assert_close(stored[row], frames[source])


def test_resize_matches_pillow_bicubic(tmp_path: Path) -> None:
    root = tmp_path / "data"
    pngs = random_frames(3, height=20, width=30, seed=7)
    write_pngs(root / "folder", pngs)
    write_video(root / "video.mp4", [block_frame(i) for i in range(9)])  # 32x48: another native size

    store = ingest_root(root, tmp_path, resize=[12, 16])
    assert store.attrs["height"] == 12 and store.attrs["width"] == 16
    expected = [np.asarray(Image.fromarray(a).resize((16, 12), Image.Resampling.BICUBIC)) for a in pngs]
    np.testing.assert_array_equal(clip_frames(store, "folder"), np.stack(expected))
    video = clip_frames(store, "video")
    assert video.shape == (9, 12, 16, 3)
    assert_close(video[4], np.asarray(Image.fromarray(block_frame(4)).resize((16, 12), Image.Resampling.BICUBIC)))


def test_sizes_must_agree_without_resize(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_pngs(root / "a", random_frames(2, height=20, width=30))
    write_pngs(root / "b", random_frames(2, height=10, width=30))
    with pytest.raises(BadClip, match=r"clip 'b'.*10x30.*20x30"):
        ingest_root(root, tmp_path)

    mixed = write_pngs(tmp_path / "mixed" / "m", random_frames(3, height=20, width=30))
    Image.fromarray(random_frames(1, height=20, width=31)[0]).save(mixed / "0001.png")
    with pytest.raises(BadClip, match=r"0001\.png.*20x31"):
        ingest_root(tmp_path / "mixed", tmp_path / "mixed")


def test_split_file_assigns_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("a", "b", "c"):
        write_pngs(root / name, random_frames(2))
    (root / "splits.json").write_text(json.dumps({"train": ["c", "a"], "test": ["b"]}))

    store = ingest_root(root, tmp_path, split_file=root / "splits.json")
    assert store.clip_ids == ["a", "b", "c"]
    assert store.splits.tolist() == ["train", "test", "train"]
    assert store.clips_in("train").tolist() == [0, 2]


@pytest.mark.parametrize(("splits", "message"), [
    ({"train": ["a"]}, r"\['b'\].*not listed in split file"),
    ({"train": ["a", "b", "zzz"]}, r"split entry 'zzz' in .*splits\.json has no video or frame folder"),
    ({"train": ["a", "b"], "val": ["a"]}, r"clip 'a' is listed in 'train' and 'val'"),
    ({"train": ["a", "b", "b"]}, r"clip 'b' is listed twice"),
    ({"train": ["a", "b"], "holdout": []}, r"unknown split\(s\) \['holdout'\]"),
    (["a", "b"], r"expected an object"),
])
def test_broken_split_files_are_store_errors(tmp_path: Path, splits: object, message: str) -> None:
    root = tmp_path / "data"
    for name in ("a", "b"):
        write_pngs(root / name, random_frames(2))
    (root / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(StoreError, match=message):
        VideoReader(root, split_file=root / "splits.json").entries()


def bad_dataset(root: Path) -> None:
    """One good clip, a corrupt mp4, a folder with a truncated PNG in the middle, and an empty folder."""
    write_pngs(root / "good", random_frames(3, height=HEIGHT, width=WIDTH))
    (root / "broken.mp4").write_bytes(np.random.default_rng(8).bytes(4000))
    folder = write_pngs(root / "cut", random_frames(3, height=HEIGHT, width=WIDTH, seed=9))
    data = (folder / "0001.png").read_bytes()
    (folder / "0001.png").write_bytes(data[: len(data) // 2])
    (root / "empty").mkdir()


@pytest.mark.parametrize(("remove", "message"), [
    ([], r"clip 'broken' \(.*broken\.mp4\): cannot read the video"),
    (["broken.mp4", "empty"], r"clip 'cut' \(.*cut/0001\.png\): cannot read the image"),
    (["broken.mp4", "cut"], r"clip 'empty' \(.*empty\): no image files"),
])
def test_bad_clips_stop_ingest(tmp_path: Path, remove: list[str], message: str) -> None:
    root = tmp_path / "data"
    bad_dataset(root)
    for name in remove:
        path = root / name
        if path.is_dir():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()
    with pytest.raises(BadClip, match=message):
        ingest_root(root, tmp_path, StoreOptions(on_bad_clip="error"))


def test_bad_clips_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    bad_dataset(root)

    store = ingest_root(root, tmp_path, StoreOptions(on_bad_clip="skip"))
    assert store.clip_ids == ["broken", "cut", "empty", "good"]
    assert store.frame_counts.tolist() == [0, 0, 0, 3]
    assert store.clips_in("val").tolist() == [3]
    assert set(store.skipped) == {"broken", "cut", "empty"}
    assert "broken.mp4" in store.skipped["broken"]
    assert "0001.png" in store.skipped["cut"]
    assert "no image files" in store.skipped["empty"]


def test_decoded_count_must_match_packets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    write_video(tmp_path / "data" / "v.mp4", [block_frame(i) for i in range(9)])
    counted = video_module._probe_video
    monkeypatch.setattr(video_module, "_probe_video", lambda entry: replace(counted(entry), frames=10))
    with pytest.raises(BadClip, match=r"v\.mp4\): decoded 9 frames, but the stream has 10 packets"):
        ingest_root(tmp_path / "data", tmp_path)


def test_duplicate_clip_ids_are_store_errors(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_video(tmp_path / "data" / "a.mp4", [block_frame(i) for i in range(9)])
    write_video(tmp_path / "data" / "a.mkv", [block_frame(i) for i in range(9)])
    with pytest.raises(StoreError, match=r"a\.mkv and a\.mp4 are both clip 'a'"):
        VideoReader(tmp_path / "data").entries()


@pytest.mark.parametrize("settings", [{"frames": 0}, {"frames": True}, {"resize": [0, 4]}, {"resize": [4]}])
def test_bad_settings_are_store_errors(tmp_path: Path, settings: dict) -> None:
    with pytest.raises(StoreError):
        VideoReader(tmp_path, **settings)


def test_options_are_recorded(tmp_path: Path) -> None:
    split_file = tmp_path / "splits.json"
    reader = VideoReader(tmp_path, frames=8, resize=(12, 16), split_file=split_file)
    assert reader.options() == {"frames": 8, "resize": [12, 16], "split_file": str(split_file.resolve())}
    json.dumps(reader.options())
