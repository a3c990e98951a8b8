#!/usr/bin/env python
"""Feature-store throughput: write and read MB/s, on-disk size, and what a selective frame read costs.

Writes ``--clips`` clips of one layer of shape ``--shape`` (T', h, w, C) through the project's
``FeatureStoreWriter`` (float16 cast with overflow check, one chunk per feature frame, one shard per clip,
zstd), then reads them back

* whole clip through ``open_feature_store(...).layer(L)[clip].compute()`` (the lazy dask path probes use),
* whole clip through zarr directly (``array[clip]``),
* ``--frames`` of the T' frames of one clip through both paths,

each with the page cache warm (just written) and cold (the store's files evicted with
``posix_fadvise(DONTNEED)`` after an fsync; no root needed, only these files are affected).

Bytes read are counted by a ``zarr.storage.LocalStore`` subclass that adds up the length of every buffer
its ``get`` / ``get_partial_values`` return (whole keys and byte ranges alike) — what zarr asked the disk
for. For cold reads the kernel's own count (``read_bytes`` in ``/proc/self/io``, includes readahead) is
shown next to it. MB = 10^6 bytes of uncompressed float16 feature data unless a column says otherwise.

Run: ``.venv/bin/python bench/featurestore.py`` (about a minute on 2 cores with the defaults).
This is a benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dask  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402
from zarr.storage import LocalStore  # noqa: E402

from extractors.base import ClipFeatures  # noqa: E402
from extractors.featurestore import (  # noqa: E402
    FeatureStoreWriter,
    layer_key,
    open_feature_store,
    to_float16,
)
from benchlib import evict, kernel_read_bytes, print_table  # noqa: E402

MB = 1e6
LAYER = 0


# --------------------------------------------------------------------------------------------------------
# Counting what zarr reads


@dataclass
class ReadCounter:
    """Bytes and requests returned by the store, split into chunk data and metadata (``zarr.json``)."""

    data_bytes: int = 0
    data_requests: int = 0
    meta_bytes: int = 0
    meta_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, key: str, buffer) -> None:
        if buffer is None:
            return
        size = len(buffer)
        with self.lock:
            if key.endswith("zarr.json"):
                self.meta_bytes += size
                self.meta_requests += 1
            else:
                self.data_bytes += size
                self.data_requests += 1

    def reset(self) -> None:
        with self.lock:
            self.data_bytes = self.data_requests = self.meta_bytes = self.meta_requests = 0


class CountingLocalStore(LocalStore):
    """A read-through ``LocalStore`` that counts every byte its reads return."""

    def __init__(self, root, *, read_only: bool = False, counter: ReadCounter | None = None) -> None:
        super().__init__(root, read_only=read_only)
        self.counter = counter if counter is not None else ReadCounter()

    def with_read_only(self, read_only: bool = False):
        return type(self)(self.root, read_only=read_only, counter=self.counter)

    async def get(self, key, prototype=None, byte_range=None):
        buffer = await super().get(key, prototype, byte_range)
        self.counter.add(key, buffer)
        return buffer

    async def get_partial_values(self, prototype, key_ranges: Iterable):
        key_ranges = list(key_ranges)
        buffers = await super().get_partial_values(prototype, key_ranges)
        for (key, _), buffer in zip(key_ranges, buffers):
            self.counter.add(key, buffer)
        return buffers

    def get_sync(self, key, *, prototype=None, byte_range=None):
        buffer = super().get_sync(key, prototype=prototype, byte_range=byte_range)
        self.counter.add(key, buffer)
        return buffer


def readahead_kb(path: Path) -> int | None:
    """The block device's readahead window for the file system holding ``path``, if sysfs tells."""
    dev = os.stat(path).st_dev
    base = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for candidate in (base / "queue" / "read_ahead_kb", base / ".." / "queue" / "read_ahead_kb"):
        try:
            return int(candidate.read_text())
        except (OSError, ValueError):
            continue
    return None


# --------------------------------------------------------------------------------------------------------
# Data


def activations(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values shaped like transformer activations.

    N(0, 1) scaled per channel by a log-normal factor (channels differ in scale), a few "massive
    activation" channels (x100) and rare large outliers (x20), all well inside the float16 range.
    """
    channels = shape[-1]
    values = rng.standard_normal(shape, dtype=np.float32)
    scale = np.exp(rng.normal(0.0, 0.5, channels)).astype(np.float32)
    scale[rng.choice(channels, size=min(4, channels), replace=False)] *= 100.0
    values *= scale
    flat = values.reshape(-1)
    outliers = rng.choice(flat.size, size=max(1, flat.size // 10_000), replace=False)
    flat[outliers] *= 20.0
    return values


# --------------------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Result:
    name: str
    cache: str
    mb_data: float  # uncompressed float16 MB delivered per operation
    times: list[float]
    store_bytes: float | None = None  # per operation, as returned by the counting store
    store_requests: float | None = None
    kernel_bytes: float | None = None  # per operation, /proc/self/io read_bytes (cold only)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_store(path: Path, clips: list[np.ndarray], frame_index: np.ndarray, level: int) -> None:
    writer = FeatureStoreWriter(path, clip_index=list(range(len(clips))), layers=(LAYER,),
                                fingerprint={"model": "bench", "timestep": None},
                                compression_level=level)
    for position, values in enumerate(clips):
        writer.write_clip(position, ClipFeatures({LAYER: values}, frame_index))
    writer.finish({"model": "bench", "timestep": None})


def dir_size(path: Path) -> tuple[int, int]:
    """(bytes of chunk/shard files, bytes of metadata files) under ``path``."""
    data = meta = 0
    for file in path.rglob("*"):
        if file.is_file():
            if file.name == "zarr.json":
                meta += file.stat().st_size
            else:
                data += file.stat().st_size
    return data, meta


def measure_read(name: str, cache: str, store_path: Path, clips: int, repeats: int, mb_data: float,
                 read: Callable[[object, int], object], opener: Callable[[CountingLocalStore], object]) -> Result:
    """Time ``read(handle, clip)`` for every clip, ``repeats`` times; one sample per clip read.

    The handle is opened once (outside the timing) over a counting store; ``cache`` is "warm" or "cold".
    """
    counter = ReadCounter()
    store = CountingLocalStore(store_path, read_only=True, counter=counter)
    handle = opener(store)
    times: list[float] = []
    store_bytes: list[int] = []
    requests: list[int] = []
    kernel: list[int] = []
    for _ in range(repeats):
        for clip in range(clips):
            if cache == "cold":
                evict(store_path)
            else:
                read(handle, clip)  # make sure this clip is in the page cache
            counter.reset()
            before = kernel_read_bytes()
            times.append(timed(lambda: read(handle, clip)))
            after = kernel_read_bytes()
            store_bytes.append(counter.data_bytes + counter.meta_bytes)
            requests.append(counter.data_requests + counter.meta_requests)
            if before is not None and after is not None:
                kernel.append(after - before)
    return Result(name, cache, mb_data, times, statistics.mean(store_bytes), statistics.mean(requests),
                  statistics.mean(kernel) if kernel else None)


# --------------------------------------------------------------------------------------------------------
# Report


def fmt_mb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / MB:9.2f}"


def parse_shape(text: str) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(part) for part in text.lower().replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected T,h,w,C integers") from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected four positive integers T,h,w,C")
    return shape  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Feature-store write/read throughput (MB/s), on-disk size and selective frame reads. "
                    "Prints figures; asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--shape", type=parse_shape, default=(21, 30, 52, 1536),
                        help="per-clip layer shape T',h,w,C (default: Wan-1.3B-like, ~100 MB in float16)")
    parser.add_argument("--clips", type=int, default=3, help="clips in the store (one shard each)")
    parser.add_argument("--frames", type=int, default=4, help="frames fetched by the selective read")
    parser.add_argument("--repeats", type=int, default=2,
                        help="repetitions of every measurement (reads: each repeat reads every clip)")
    parser.add_argument("--level", type=int, default=1,
                        help="zstd level (FeatureStoreWriter's compression_level; the workflow uses its default 1)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache reads")
    parser.add_argument("--tmpdir", type=Path, default=None,
                        help="parent of the temporary store (default: the system temp dir; use a disk, not tmpfs, "
                             "for meaningful cold reads)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and print its path")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.repeats < 1:
        parser.error("--clips and --repeats must be >= 1")
    frames_total = args.shape[0]
    if not 1 <= args.frames <= frames_total:
        parser.error(f"--frames must be between 1 and T'={frames_total}")

    shape = args.shape
    clip_mb = np.prod(shape, dtype=np.int64) * 2 / MB
    chunk_mb = np.prod(shape[1:], dtype=np.int64) * 2 / MB
    selected = np.unique(np.linspace(0, frames_total - 1, args.frames).round().astype(int))
    frame_index = np.arange(frames_total, dtype=np.int64) * 4  # any increasing clip-frame numbers

    print(f"Feature-store benchmark  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, zarr {zarr.__version__}, "
          f"dask {dask.__version__}, numpy {np.__version__}")
    print(f"Layer array per clip: (T'={shape[0]}, h={shape[1]}, w={shape[2]}, C={shape[3]}) float16 = "
          f"{clip_mb:.1f} MB; {args.clips} clips, one chunk per frame ({chunk_mb:.2f} MB), one shard per clip, "
          f"zstd level {args.level}; {args.repeats} repeat(s)")

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    clips = [activations(rng, shape) for _ in range(args.clips)]
    peak = max(float(np.abs(c).max()) for c in clips)
    print(f"Data: N(0,1) x log-normal per-channel scale, 4 channels x100, 1e-4 of values x20; "
          f"max |x| = {peak:.0f} (float16 max 65504); generated in {time.perf_counter() - t0:.1f} s (not timed)")
    print("Method: bytes read = sum of buffer lengths returned by a counting zarr LocalStore subclass "
          "(get / get_partial_values, incl. shard-index and zarr.json reads); kernel MB = /proc/self/io "
          "read_bytes delta (cold only; includes readahead). Warm = page cache holds the store; "
          "cold = its files fsync'ed and evicted with posix_fadvise(DONTNEED) before each read. "
          "Times are medians over repeats x clips.")
    print()

    parent = args.tmpdir if args.tmpdir is not None else None
    tmp = Path(tempfile.mkdtemp(prefix="bench-featurestore-", dir=parent))
    try:
        return run(args, tmp, clips, frame_index, selected, clip_mb)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path, clips: list[np.ndarray], frame_index: np.ndarray, selected: np.ndarray,
        clip_mb: float) -> int:
    store_path = tmp / "shard-0.zarr"
    total_mb = clip_mb * len(clips)

    # ---- write ------------------------------------------------------------------------------------------
    cast_times = [timed(lambda: [to_float16(c, what="bench") for c in clips]) for _ in range(args.repeats)]
    write_times = []
    for _ in range(args.repeats):
        shutil.rmtree(store_path, ignore_errors=True)
        write_times.append(timed(lambda: write_store(store_path, clips, frame_index, args.level)))
    fsync_time = timed(lambda: evict(store_path))  # flush what the last write left dirty (and evict)
    data_bytes, meta_bytes = dir_size(store_path)
    on_disk = data_bytes + meta_bytes
    logical = total_mb * MB

    print(f"WRITE  {len(clips)} clips x {clip_mb:.1f} MB = {total_mb:.1f} MB of float16 through FeatureStoreWriter "
          f"(incl. float16 cast + overflow check, write_clip, finish; to the page cache, no fsync)")
    rows = [
        ["FeatureStoreWriter: write_clip x N + finish", f"{statistics.median(write_times):.2f}",
         f"{total_mb / statistics.median(write_times):.0f}", f"{total_mb / min(write_times):.0f}"],
        ["  of which to_float16 (cast + check), in memory", f"{statistics.median(cast_times):.2f}",
         f"{total_mb / statistics.median(cast_times):.0f}", f"{total_mb / min(cast_times):.0f}"],
        ["  afterwards: fsync of the store (not in the above)", f"{fsync_time:.2f}", "-", "-"],
    ]
    print_table(["step", "median s", "MB/s", "best MB/s"], rows, "lrrr")
    print()
    print(f"ON DISK  {on_disk / MB:.1f} MB ({data_bytes / MB:.1f} MB shards + {meta_bytes / 1e3:.1f} kB metadata) "
          f"for {logical / MB:.1f} MB float16: compression ratio {logical / on_disk:.3f}x "
          f"({100 * (1 - on_disk / logical):.1f}% smaller)")
    print()

    # ---- read -------------------------------------------------------------------------------------------
    def open_dask(store):
        fs = open_feature_store([store_path])  # validates the real store (completion marker etc.)
        fs.shards = [zarr.open_group(store, mode="r")]  # same store, read through the counting wrapper
        return fs.layer(LAYER)

    def open_zarr(store):
        return zarr.open_group(store, mode="r")[layer_key(LAYER)]

    sel = selected.tolist()
    sel_mb = clip_mb * len(sel) / args.shape[0]
    cases = {
        "dask whole": ("whole clip   dask  layer(L)[c].compute()", clip_mb, open_dask,
                       lambda x, c: x[c].compute()),
        "zarr whole": ("whole clip   zarr  array[c]", clip_mb, open_zarr, lambda a, c: a[c]),
        "dask sel": (f"{len(sel)} frames     dask  layer(L)[c, {sel}].compute()", sel_mb, open_dask,
                     lambda x, c: x[c, sel].compute()),
        "zarr sel": (f"{len(sel)} frames     zarr  np.stack([array[c, f] for f in {sel}])", sel_mb, open_zarr,
                     lambda a, c: np.stack([a[c, f] for f in sel])),
        "zarr oindex": (f"{len(sel)} frames     zarr  array.oindex[c, {sel}]", sel_mb, open_zarr,
                        lambda a, c: a.oindex[c, sel]),
    }
    caches = ["warm"] if args.no_cold else ["warm", "cold"]
    results: dict[tuple[str, str], Result] = {}
    for cache in caches:
        for key, (name, mb_data, opener, read) in cases.items():
            results[cache, key] = measure_read(name, cache, store_path, len(clips), args.repeats, mb_data, read,
                                               opener)

    # sanity: what was read equals what was written (outside the timing, last clip)
    check = open_feature_store([store_path]).layer(LAYER)[len(clips) - 1, sel].compute()
    expected = clips[-1][sel].astype(np.float16)
    if not np.array_equal(check, expected):
        print("WARNING: data read back differs from data written", file=sys.stderr)

    print(f"READ  per clip (one shard, {clip_mb:.1f} MB float16, {data_bytes / len(clips) / MB:.1f} MB on disk); "
          f"MB/s = float16 MB delivered / time; 'from store' = bytes zarr fetched (requests)")
    rows = []
    for r in results.values():
        rows.append([r.cache, r.name, f"{r.mb_data:.1f}", f"{fmt_mb(r.store_bytes).strip()} ({r.store_requests:.0f})",
                     fmt_mb(r.kernel_bytes).strip() if r.cache == "cold" else "-",
                     f"{r.median * 1e3:.0f}", f"{r.mb_data / r.median:.0f}", f"{r.mb_data / r.best:.0f}"])
    print_table(["cache", "read", "MB data", "MB from store (req)", "kernel MB", "median ms", "MB/s", "best MB/s"],
                rows, "llrrrrrr")
    print()

    print(f"SELECTIVE vs WHOLE  ({len(sel)} of {args.shape[0]} frames: ideal fraction {len(sel) / args.shape[0]:.3f})")
    rows = []
    for cache in caches:
        for path, whole_key, part_key in [("dask", "dask whole", "dask sel"), ("zarr per frame", "zarr whole", "zarr sel"),
                                          ("zarr oindex", "zarr whole", "zarr oindex")]:
            whole, part = results[cache, whole_key], results[cache, part_key]
            kernel = (f"{part.kernel_bytes / whole.kernel_bytes:.3f}"
                      if cache == "cold" and part.kernel_bytes and whole.kernel_bytes else "-")
            rows.append([cache, path, f"{part.store_bytes / MB:.2f} / {whole.store_bytes / MB:.2f}",
                         f"{part.store_bytes / whole.store_bytes:.3f}", kernel,
                         f"{part.median * 1e3:.0f} / {whole.median * 1e3:.0f}", f"{part.median / whole.median:.3f}"])
    print_table(["cache", "path", "MB read (sel / whole)", "bytes ratio", "kernel ratio", "ms (sel / whole)",
                 "time ratio"], rows, "llrrrrr")
    if any(results[c, "zarr oindex"].median > 2 * results[c, "zarr sel"].median for c in caches):
        print("note: zarr's orthogonal indexing with an integer list (array.oindex[c, [..]]) gathers every element "
              "through fancy indexing (np.ix_ over all dimensions): it reads only the selected chunks but decodes "
              "into the output far slower than per-frame basic indexing or dask's per-chunk tasks.")
    if not args.no_cold:
        ra = readahead_kb(tmp)
        print("note: 'kernel MB' above 'MB from store' on cold selective reads is the kernel's readahead "
              f"(read_ahead_kb of this device: {ra if ra is not None else 'unknown'}).")
    if not args.no_cold and all((r.kernel_bytes or 0) < 0.5 * r.store_bytes for r in results.values()
                                if r.cache == "cold"):
        print("note: the kernel read almost nothing on 'cold' reads: this file system (tmpfs?) keeps the store "
              "in memory, so cold = warm here; pass --tmpdir on a disk.")
    return 0


if __name__ == "__main__":
    # Let asyncio in zarr's worker threads not complain on exit when interrupted.
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
