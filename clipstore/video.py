"""The ``video`` dataset kind: plain videos or frame folders, RGB only (docs/data.md).

The dataset root holds one clip per entry, in either form (both may be mixed)::

    root/
        kitchen.mp4          # a video file (.mp4 .mkv .webm .avi), decoded with PyAV; clip id "kitchen"
        hallway/             # a folder of images (.jpg .jpeg .png), frames in name order; clip id "hallway"
            0000.png
            0001.png
        splits.json          # optional {"train": [ids], "val": [ids], "test": [ids]}; anything else is ignored

Hidden entries and other files are ignored. Without a split file every clip is ``val``. ``frames: N`` keeps N
frames spread evenly over each clip (a shorter clip keeps all of its frames); ``resize: [H, W]`` resizes every
frame with Pillow's bicubic filter. Without ``resize`` every clip must have the first clip's frame size.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from clipstore.errors import BadClip, StoreError
from clipstore.frames import evenly_spaced
from clipstore.ingest import SPLITS, ClipEntry, ClipShape, DatasetReader

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".avi"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# What Pillow raises for a corrupt or truncated image (UnidentifiedImageError is an OSError; some plugins
# report broken chunks as SyntaxError or struct.error; DecompressionBombError for absurd sizes).
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)
# What PyAV raises for a missing or corrupt video: FFmpegError and its subclasses (InvalidDataError,
# av.error.FileNotFoundError, ...); OSError for file-system errors raised outside FFmpeg.
VIDEO_ERRORS = (av.error.FFmpegError, OSError)


@dataclass(frozen=True)
class _Source:
    """A clip's source as its headers describe it, before sampling and resizing."""

    frames: int
    height: int
    width: int
    fps: float | None = None


class VideoReader(DatasetReader):
    """Clips from video files or image folders under ``root`` (see the module docstring).

    ``frames``: keep this many evenly spaced frames per clip (default: all). ``resize``: ``[height, width]``
    of every stored frame (default: the native size). ``split_file``: JSON ``{split: [clip ids]}`` listing
    every clip exactly once (default: every clip is ``val``).
    """

    kind = "video"
    arrays = ("frames",)

    def __init__(self, root: str | os.PathLike, *, frames: int | None = None,
                 resize: tuple[int, int] | list[int] | None = None,
                 split_file: str | os.PathLike | None = None) -> None:
        super().__init__(root)
        if frames is not None and not _is_positive_int(frames):
            raise StoreError(f"video dataset {self.root}: frames={frames!r} must be a positive integer")
        self.frames = frames
        self.resize = _check_resize(resize, self.root)
        self.split_file = None if split_file is None else Path(split_file)
        # Source frame counts from shape(), so read() need not demux a video twice.
        self._sources: dict[Path, _Source] = {}

    def entries(self) -> list[ClipEntry]:
        clips = _list_clips(self.root)
        if not clips:
            raise StoreError(f"video dataset {self.root}: no video files ({' '.join(sorted(VIDEO_SUFFIXES))}) "
                             "or frame folders")
        splits = {clip: "val" for clip in clips} if self.split_file is None else self._read_splits(clips)
        return [ClipEntry(clip, splits[clip], clips[clip]) for clip in sorted(clips)]

    def class_names(self) -> list[str]:
        return []

    def shape(self, entry: ClipEntry) -> ClipShape:
        source = self._source(entry)
        height, width = self.resize or (source.height, source.width)
        metadata: dict[str, Any] = {"source_frames": source.frames}
        if source.fps is not None:
            metadata["fps"] = source.fps
        return ClipShape(len(evenly_spaced(source.frames, self.frames)), height, width, metadata)

    def read(self, entry: ClipEntry, frames: np.ndarray, ground_truth_frames: np.ndarray) -> dict[str, np.ndarray]:
        source = self._source(entry)
        kept = evenly_spaced(source.frames, self.frames)
        wanted = [int(kept[int(f)]) for f in frames]
        if entry.path.is_dir():
            images = self._read_folder(entry, wanted, source)
        else:
            images = self._read_video(entry, wanted, source)
        return {"frames": np.stack([images[i] for i in wanted])}

    def options(self) -> dict[str, Any]:
        return {"frames": self.frames, "resize": None if self.resize is None else list(self.resize),
                "split_file": None if self.split_file is None else str(self.split_file.resolve())}

    # -- sources -------------------------------------------------------------------------------------------

    def _source(self, entry: ClipEntry) -> _Source:
        if entry.path not in self._sources:
            probe = _probe_folder if entry.path.is_dir() else _probe_video
            self._sources[entry.path] = probe(entry)
        return self._sources[entry.path]

    def _read_folder(self, entry: ClipEntry, wanted: Sequence[int], source: _Source) -> dict[int, np.ndarray]:
        files = _image_files(entry.path)
        if len(files) != source.frames:  # the folder changed since shape() counted it
            raise _bad(entry, entry.path, f"{len(files)} image files, {source.frames} when first counted")
        return {i: self._array(entry, files[i], _load_image(entry, files[i]), source) for i in set(wanted)}

    def _read_video(self, entry: ClipEntry, wanted: Sequence[int], source: _Source) -> dict[int, np.ndarray]:
        selected, images, decoded = set(wanted), {}, 0
        try:
            with av.open(str(entry.path)) as container:
                stream = _video_stream(entry, container)
                stream.thread_type = "AUTO"  # frame threads: decoding dominates ingest time
                # Decode every frame: only the full count proves the packet count (and so the sampling) right.
                for decoded, frame in enumerate(container.decode(stream), start=1):
                    if decoded - 1 in selected:
                        images[decoded - 1] = self._array(entry, entry.path, frame.to_image(), source)
        except VIDEO_ERRORS as err:
            raise _bad(entry, entry.path, f"cannot decode: {_one_line(err)}") from None
        if decoded != source.frames:
            raise _bad(entry, entry.path, f"decoded {decoded} frames, but the stream has {source.frames} packets")
        return images

    def _array(self, entry: ClipEntry, path: Path, image: Image.Image, source: _Source) -> np.ndarray:
        """One frame as (H, W, 3) uint8 RGB, resized when asked; one code path for videos and folders."""
        if image.mode != "RGB":  # grayscale, RGBA (alpha dropped), palette, CMYK
            image = image.convert("RGB")
        if self.resize is not None:
            height, width = self.resize
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        elif image.size != (source.width, source.height):
            raise _bad(entry, path, f"frame of {image.height}x{image.width}, the clip's first is "
                                    f"{source.height}x{source.width} (set resize to store them together)")
        return np.asarray(image, dtype=np.uint8)

    # -- splits --------------------------------------------------------------------------------------------

    def _read_splits(self, clips: dict[str, Path]) -> dict[str, str]:
        """Clip id -> split from the split file, which must list every clip exactly once."""
        where = self.split_file
        try:
            listed = json.loads(where.read_text())
        except OSError as err:
            raise StoreError(f"split file {where}: cannot read it ({_one_line(err)})") from None
        except json.JSONDecodeError as err:
            raise StoreError(f"split file {where}: not valid JSON ({err})") from None
        if not isinstance(listed, dict):
            raise StoreError(f"split file {where}: expected an object {{split: [clip ids]}}, "
                             f"got {type(listed).__name__}")
        unknown = sorted(set(listed) - set(SPLITS))
        if unknown:
            raise StoreError(f"split file {where}: unknown split(s) {unknown}; use {list(SPLITS)}")
        splits: dict[str, str] = {}
        for split, ids in listed.items():
            if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                raise StoreError(f"split file {where}: {split!r} must be a list of clip ids (strings)")
            for clip in ids:
                if clip in splits:
                    places = f"twice in {split!r}" if splits[clip] == split else f"in {splits[clip]!r} and {split!r}"
                    raise StoreError(f"split file {where}: clip {clip!r} is listed {places}")
                if clip not in clips:
                    raise StoreError(f"split entry {clip!r} in {where} has no video or frame folder in {self.root}")
                splits[clip] = split
        unlisted = sorted(set(clips) - set(splits))
        if unlisted:
            raise StoreError(f"clip(s) {unlisted[:5]} in {self.root} are not listed in split file {where}")
        return splits


def _list_clips(root: Path) -> dict[str, Path]:
    """Clip id -> video file or frame folder; two entries with one id are a :class:`StoreError`."""
    clips: dict[str, Path] = {}
    for path in sorted(_visible(root)):
        if path.is_dir():
            clip = path.name
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            clip = path.stem
        else:
            continue  # split files, notes, ...
        if clip in clips:
            raise StoreError(f"video dataset {root}: {clips[clip].name} and {path.name} are both clip {clip!r}")
        clips[clip] = path
    return clips


def _visible(folder: Path) -> Iterator[Path]:
    return (path for path in folder.iterdir() if not path.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted((p for p in _visible(folder) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.name)


def _probe_folder(entry: ClipEntry) -> _Source:
    """Frame count and the first image's size; ``Image.open`` reads the header only."""
    files = _image_files(entry.path)
    if not files:
        raise _bad(entry, entry.path, f"no image files ({' '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        with Image.open(files[0]) as image:
            width, height = image.size
    except IMAGE_ERRORS as err:
        raise _bad(entry, files[0], f"cannot read the image: {_one_line(err)}") from None
    return _Source(len(files), height, width)


def _probe_video(entry: ClipEntry) -> _Source:
    """Frame count by demuxing the first video stream's packets (no decoding), size from its codec context."""
    try:
        with av.open(str(entry.path)) as container:
            stream = _video_stream(entry, container)
            # Demuxing ends with an empty flush packet, which is no frame.
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
            width, height = stream.codec_context.width, stream.codec_context.height
            fps = float(stream.average_rate) if stream.average_rate else None
    except VIDEO_ERRORS as err:
        raise _bad(entry, entry.path, f"cannot read the video: {_one_line(err)}") from None
    if count == 0:
        raise _bad(entry, entry.path, "the video stream has no frames")
    if width <= 0 or height <= 0:
        raise _bad(entry, entry.path, "the video stream has no frame size")
    return _Source(count, height, width, fps)


def _video_stream(entry: ClipEntry, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise _bad(entry, entry.path, "no video stream")
    return container.streams.video[0]


def _load_image(entry: ClipEntry, path: Path) -> Image.Image:
    """The decoded image (fully loaded, so corrupt data fails here and names this file)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")  # a copy, kept after the file closes
    except IMAGE_ERRORS as err:
        raise _bad(entry, path, f"cannot read the image: {_one_line(err)}") from None


def _bad(entry: ClipEntry, path: Path, what: str) -> BadClip:
    return BadClip(f"clip {entry.id!r} ({path}): {what}")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_resize(resize: Sequence[int] | None, root: Path) -> tuple[int, int] | None:
    if resize is None:
        return None
    if not (isinstance(resize, (list, tuple)) and len(resize) == 2 and all(map(_is_positive_int, resize))):
        raise StoreError(f"video dataset {root}: resize={resize!r} must be [height, width], positive integers")
    return int(resize[0]), int(resize[1])
