#!/usr/bin/env python
"""Dataset ingest: clips/s and MB/s of ``clipstore.ingest`` for the ScanNet and DL3DV layouts at their real
frame sizes, and the disk that ``ground_truth: query`` saves.

Writes a fixture of ``--clips`` scenes per layout, exactly as ``kind: scannet`` and ``kind: dl3dv`` read
them (docs/data.md; the same files as ``tests/layouts.py`` writes):

- **scannet**: ``--scannet-frames`` (81) frames of ``--scannet-size`` (540x720) as JPEG (quality
  ``--quality``, 95), ``instance_masks.npy`` uint16, ``poses.npy``, ``intrinsic.txt``,
  ``tag_pixel_counts_20.npy``; instance masks are the rendered objects over ~36 surface regions with
  curved borders (:func:`surface_segments`), as ScanNet's dozens of instances per frame;
- **dl3dv**: one safetensors file per scene of ``--dl3dv-frames`` (150) frames of ``--dl3dv-size``
  (294x518): images uint8, depth, points and confidence float32 (525.4 MB per scene), intrinsics,
  extrinsics.

Rendering synthetic scenes at those sizes is slow, so each scene is rendered at 1/``--downscale`` (6) of the
size by ``clipstore.synthetic`` and upsampled with NumPy: bilinear for images, depth, points and confidence
(so floats keep varied mantissas, as real predictions do), nearest for instance ids; images get Gaussian
noise (sigma 2) so that JPEG and zstd see camera-like pixels; confidence is 1 + a smooth random field in
[0, 9] (VGGT confidence is >= 1). Intrinsics are rescaled to the full size. Not timed.

Then it runs :func:`clipstore.ingest.ingest` (``progress=False``) and prints

1. **throughput** (``ground_truth: all``), for each layout and each ``--threads`` value: wall time,
   CPU/wall (the process's CPU seconds, all threads, per wall second), clips/s, source MB (the layout's
   files) per second, MB the kernel read (``/proc/self/io``), store MB on disk and store MB written per
   second. Before each run the source files are fsync'ed and dropped from the
   page cache with ``posix_fadvise(DONTNEED)`` (``--warm`` skips that); the store is written to the page
   cache (no fsync), as a dataset job does;
2. **store size per scene** with ``ground_truth: all`` and ``query`` (and for dl3dv also ``max_frames``
   ``--max-frames``, 81, with each): uncompressed bytes of the stored arrays (from their shapes and dtypes),
   bytes on disk, and each against ``all`` and against the raw float32 scene; then bytes on disk per array.

Run: ``.venv/bin/python bench/ingest.py`` (about 100 s on 2 cores, of which ~35 s write the fixture;
~2.4 GB of source files and ~3 GB of memory at peak with the defaults). It prints figures and asserts
nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from benchlib import cores, evict, kernel_read_bytes, parse_resolution, print_table, timed  # noqa: E402
from clipstore.dl3dv import DL3DVReader  # noqa: E402
from clipstore.frames import query_frames  # noqa: E402
from clipstore.ingest import DatasetReader, StoreOptions, ingest  # noqa: E402
from clipstore.scannet import COLOUR_RESOLUTION, ScanNetReader, rescale_intrinsics  # noqa: E402
from clipstore.synthetic import CLASS_NAMES, SyntheticSpec, render_clip  # noqa: E402

MB = 1e6
SCANNET_CLASSES = 20
LAYOUTS = ("scannet", "dl3dv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="scenes per layout (default 4)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="ingest threads to sweep (default 1 2); the store-size runs use the largest")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                        help="layouts to measure (default both)")
    parser.add_argument("--scannet-frames", type=int, default=81, help="frames per ScanNet scene (81)")
    parser.add_argument("--scannet-size", type=parse_resolution, default=(540, 720),
                        help="ScanNet frame size HxW (540x720)")
    parser.add_argument("--dl3dv-frames", type=int, default=150, help="frames per DL3DV scene (150)")
    parser.add_argument("--dl3dv-size", type=parse_resolution, default=(294, 518),
                        help="DL3DV frame size HxW (294x518)")
    parser.add_argument("--max-frames", type=int, default=81,
                        help="max_frames of the extra DL3DV store-size runs (81; 0 skips them)")
    parser.add_argument("--downscale", type=int, default=6,
                        help="the fixture is rendered at 1/N of the frame size, then upsampled (6)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the ScanNet frames (95)")
    parser.add_argument("--warm", action="store_true",
                        help="leave the source files in the page cache (default: evict them before each run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmpdir", type=Path, default=None, help="parent of the temporary directory")
    parser.add_argument("--keep", nargs="?", const=True, default=None, metavar="DIR",
                        help="keep the files: alone, keep the temporary directory; with DIR, work in DIR "
                             "(reusing a fixture written there with the same settings) and keep it")
    args = parser.parse_args(argv)
    if args.clips < 1 or min(args.threads) < 1 or args.downscale < 1:
        parser.error("--clips, --threads and --downscale must be >= 1")
    if min(args.scannet_frames, args.dl3dv_frames) < 1 or args.max_frames < 0:
        parser.error("frame counts must be >= 1 (--max-frames >= 0)")
    return args


# --- fixture -------------------------------------------------------------------------------------------
def upsample_linear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(S, h, w[, C]) -> (S, H, W[, C]) float32, bilinear with pixel centres at integer coordinates; a few
    frames at a time, which keeps the temporaries in the CPU caches (several times faster than all at once)."""
    out = np.empty((len(values), *size, *values.shape[3:]), dtype=np.float32)
    step = max(1, int(4e6 // max(1, out[0].size)))
    for start in range(0, len(values), step):
        block = values[start:start + step].astype(np.float32)
        for axis, n_out in ((1, size[0]), (2, size[1])):
            n_in = block.shape[axis]
            x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
            lo = np.floor(x).astype(np.int64)
            weight = (x - lo).astype(np.float32).reshape((n_out,) + (1,) * (block.ndim - axis - 1))
            low, high = np.take(block, lo, axis=axis), np.take(block, np.minimum(lo + 1, n_in - 1), axis=axis)
            high -= low
            high *= weight
            low += high
            block = low
        out[start:start + step] = block
    return out


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Gaussian noise in place, frame by frame from one pool at random offsets (iid-looking, and far
    cheaper than a fresh draw per pixel)."""
    size = image[0].size
    pool = rng.standard_normal(2 * size, dtype=np.float32) * sigma
    for frame, offset in zip(image, rng.integers(0, size, len(image))):
        frame += pool[offset:offset + size].reshape(frame.shape)


def upsample_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = ((np.arange(size[0]) + 0.5) * values.shape[1] / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * values.shape[2] / size[1]).astype(np.int64)
    return values[:, rows][:, :, cols]


def full_size_clip(spec: SyntheticSpec, clip: int, size: tuple[int, int], rng: np.random.Generator,
                   keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A synthetic clip rendered at ``spec``'s small size, upsampled to ``size`` (module docstring)."""
    small = render_clip(spec, clip)
    frames = len(small["frames"])
    out: dict[str, np.ndarray] = {}
    image = upsample_linear(small["frames"], size)
    add_noise(image, 2.0, rng)
    out["frames"] = np.empty(image.shape, dtype=np.uint8)
    for source, target in zip(image, out["frames"]):  # frame by frame: no full-size temporaries
        np.rint(source, out=source)
        np.clip(source, 0, 255, out=source)
        target[...] = source
    del image
    if "depth" in keys:
        out["depth"] = upsample_linear(small["depth"], size)
        out["points"] = upsample_linear(small["points"], size)
        field = rng.random((frames, spec.height, spec.width), dtype=np.float32)
        out["confidence"] = 1 + 9 * upsample_linear(field, size) ** 2
    if "instance" in keys:
        objects = upsample_nearest(small["instance"], size)
        out["instance"] = surface_segments(rng, frames, size)
        out["instance"][objects > 0] = 200 + objects[objects > 0]
        out["semantic"] = upsample_nearest(small["semantic"], size)
    out["extrinsics"] = small["extrinsics"].astype(np.float32)
    k = rescale_intrinsics(small["intrinsics"][0].astype(np.float64), (spec.height, spec.width), size)
    out["intrinsics"] = np.repeat(k[None].astype(np.float32), frames, axis=0)
    return out


def surface_segments(rng: np.random.Generator, frames: int, size: tuple[int, int]) -> np.ndarray:
    """(S, H, W) ids of ~36 regions per frame with smooth, curved borders (level sets of two smooth random
    fields), 0 (unannotated) in ~14% of the pixels: the synthetic room is one instance-0 box, and ScanNet's
    masks hold dozens of irregular instances, which compress far less than a few upsampled blocks."""
    cells = (max(2, size[0] // 60), max(2, size[1] // 60))
    first = upsample_linear(rng.random((frames, *cells), dtype=np.float32), size)
    second = upsample_linear(rng.random((frames, *cells), dtype=np.float32), size)
    ids = np.empty((frames, *size), dtype=np.uint16)
    for a, b, target in zip(first, second, ids):
        target[...] = 1 + np.minimum(a * 6, 5).astype(np.uint16) * 6 + np.minimum(b * 6, 5).astype(np.uint16)
        target[np.abs(a - 0.5) < 0.04] = 0
    return ids


def camera_to_world(extrinsics: np.ndarray) -> np.ndarray:
    square = np.tile(np.eye(4), (len(extrinsics), 1, 1))
    square[:, :3] = extrinsics
    return np.linalg.inv(square)


def source_intrinsics(matrix: np.ndarray, stored: tuple[int, int]) -> np.ndarray:
    """The 4 x 4 ``intrinsic.txt`` at ScanNet's colour resolution that rescales to ``matrix`` at ``stored``."""
    sy, sx = stored[0] / COLOUR_RESOLUTION[0], stored[1] / COLOUR_RESOLUTION[1]
    out = np.eye(4)
    out[0, 0], out[0, 2] = matrix[0, 0] / sx, (matrix[0, 2] + 0.5) / sx - 0.5
    out[1, 1], out[1, 2] = matrix[1, 1] / sy, (matrix[1, 2] + 0.5) / sy - 0.5
    return out


def split_of(clip: int, clips: int) -> str:
    return "val" if clips > 1 and clip == clips - 1 else "train"


def write_splits(root: Path, listed: list[tuple[str, list[str]]]) -> None:
    for split in ("train", "val"):
        (root / f"{split}.json").write_text(json.dumps([entry for s, entry in listed if s == split]))


def write_scannet(root: Path, clips: int, frames: int, size: tuple[int, int], downscale: int, quality: int,
                  seed: int) -> None:
    """``clips`` processed ScanNet scenes (the layout of clipstore/scannet.py)."""
    root.mkdir(parents=True)
    names = [*CLASS_NAMES, *(f"unused-{k}" for k in range(SCANNET_CLASSES - len(CLASS_NAMES)))]
    (root / f"class_names_{SCANNET_CLASSES}.json").write_text(json.dumps(names))
    spec = SyntheticSpec(clips=clips, frames=frames, height=-(-size[0] // downscale),
                         width=-(-size[1] // downscale), seed=seed)
    rng = np.random.default_rng([seed, 1])
    listed = []
    for clip in range(clips):
        scene, split = f"scene{clip:04d}_00", split_of(clip, clips)
        path = root / split / scene
        (path / "frames").mkdir(parents=True)
        arrays = full_size_clip(spec, clip, size, rng, ("instance",))
        for i, frame in enumerate(arrays["frames"]):
            Image.fromarray(frame).save(path / "frames" / f"frame_{i:05d}.jpg", quality=quality)
        np.save(path / "instance_masks.npy", arrays["instance"].astype(np.uint16))
        np.save(path / "poses.npy", camera_to_world(arrays["extrinsics"].astype(np.float64)).astype(np.float32))
        np.savetxt(path / "intrinsic.txt", source_intrinsics(arrays["intrinsics"][0].astype(np.float64), size))
        semantic = arrays["semantic"].reshape(frames, -1).astype(np.int64)
        offsets = (np.arange(frames)[:, None] * SCANNET_CLASSES + semantic)[semantic >= 0]
        counts = np.bincount(offsets, minlength=frames * SCANNET_CLASSES).reshape(frames, SCANNET_CLASSES)
        np.save(path / f"tag_pixel_counts_{SCANNET_CLASSES}.npy", counts.astype(np.int32))
        listed.append((split, [split, scene]))
    write_splits(root, listed)


def write_dl3dv(root: Path, clips: int, frames: int, size: tuple[int, int], downscale: int, seed: int) -> None:
    """``clips`` processed DL3DV scenes (the layout of clipstore/dl3dv.py)."""
    (root / "1K").mkdir(parents=True)
    spec = SyntheticSpec(clips=clips, frames=frames, height=-(-size[0] // downscale),
                         width=-(-size[1] // downscale), seed=seed + 1)
    rng = np.random.default_rng([seed, 2])
    listed = []
    for clip in range(clips):
        name = f"{clip:04d}" + "ab" * 8
        arrays = full_size_clip(spec, clip, size, rng, ("depth",))
        save_file({
            "images": np.ascontiguousarray(arrays.pop("frames").transpose(0, 3, 1, 2)),
            "depthmaps": arrays.pop("depth")[..., None],
            "pointmaps": arrays.pop("points"),
            "confmaps": arrays.pop("confidence")[..., None],
            "intrinsic": arrays["intrinsics"],
            "extrinsic": arrays["extrinsics"],
            "start_idx": np.array([3 * clip], dtype=np.int64),
        }, str(root / "1K" / f"{name}.sft"))
        listed.append((split_of(clip, clips), ["1K", name]))
    write_splits(root, listed)


# --- measuring -----------------------------------------------------------------------------------------
def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def bytes_under(root: Path) -> int:
    return sum(p.stat().st_size for p in files_under(root))


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def uncompressed_per_clip(store: Path) -> float:
    """Bytes of the stored arrays (shapes x itemsizes, ``frame_count`` included) per clip."""
    group = zarr.open_group(store, mode="r")
    total, clips = 0, None
    for _, array in group.arrays():
        total += int(np.prod(array.shape, dtype=np.int64)) * array.dtype.itemsize
        clips = array.shape[0]
    return total / clips


def run_ingest(store: Path, reader: DatasetReader, options: StoreOptions, threads: int, warm: bool) -> dict:
    shutil.rmtree(store, ignore_errors=True)  # a leftover store would be resumed, not rewritten
    if not warm:
        evict(reader.root)
    before, cpu = kernel_read_bytes(), cpu_seconds()
    seconds, _ = timed(lambda: ingest(store, reader, options, threads=threads, progress=False))
    after, cpu = kernel_read_bytes(), cpu_seconds() - cpu
    by_array = {path.name: bytes_under(path) for path in sorted(store.iterdir()) if path.is_dir()}
    return {"seconds": seconds, "cpu": cpu, "kernel": None if before is None or after is None else after - before,
            "store": bytes_under(store), "uncompressed": uncompressed_per_clip(store), "by_array": by_array}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if isinstance(args.keep, str):
        root = Path(args.keep)
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.tmpdir))
    threads_max = max(args.threads)
    print(f"Ingest benchmark  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, {cores()} cores, "
          f"Python {platform.python_version()}, zarr {zarr.__version__}, numpy {np.__version__}", flush=True)
    try:
        sources = fixture(args, root)
        readers = {"scannet": ScanNetReader, "dl3dv": DL3DVReader}
        source_bytes = {layout: bytes_under(path) for layout, path in sources.items()}
        throughput, sizes = [], []
        for layout in args.layouts:
            reader = readers[layout](sources[layout])
            for threads in args.threads:
                out = run_ingest(root / f"{layout}-all-t{threads}.zarr", reader, StoreOptions(), threads, args.warm)
                throughput.append((layout, threads, out))
                if threads == threads_max:
                    sizes.append((layout, "ground_truth: all", None, out))
                if not args.keep:
                    shutil.rmtree(root / f"{layout}-all-t{threads}.zarr")
            configs = [("ground_truth: query", StoreOptions(ground_truth="query"))]
            frames = args.scannet_frames if layout == "scannet" else args.dl3dv_frames
            if layout == "dl3dv" and 0 < args.max_frames < frames:
                configs += [(f"max_frames: {args.max_frames}, ground_truth: {truth}",
                             StoreOptions(max_frames=args.max_frames, ground_truth=truth))
                            for truth in ("all", "query")]
            for n, (name, options) in enumerate(configs):
                store = root / f"{layout}-options{n}.zarr"
                out = run_ingest(store, reader, options, threads_max, args.warm)
                sizes.append((layout, name, options, out))
                if not args.keep:
                    shutil.rmtree(store)
        report(args, throughput, sizes, source_bytes)
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")


def fixture(args: argparse.Namespace, root: Path) -> dict[str, Path]:
    """The source dataset of each layout in ``args.layouts``, written (or reused: same settings, --keep DIR)."""
    sources = {}
    for layout in args.layouts:
        keys = ["clips", "downscale", "seed", f"{layout}_frames", f"{layout}_size"]
        keys += ["quality"] if layout == "scannet" else []
        settings = json.loads(json.dumps({key: getattr(args, key) for key in keys}))
        sources[layout] = root / f"{layout}-source"
        marker = root / f"{layout}-fixture.json"
        if marker.exists() and json.loads(marker.read_text()) == settings:
            print(f"Fixture {layout}: reusing {sources[layout]}", flush=True)
            continue
        marker.unlink(missing_ok=True)
        shutil.rmtree(sources[layout], ignore_errors=True)
        started = time.perf_counter()
        if layout == "scannet":
            write_scannet(sources[layout], args.clips, args.scannet_frames, args.scannet_size, args.downscale,
                          args.quality, args.seed)
        else:
            write_dl3dv(sources[layout], args.clips, args.dl3dv_frames, args.dl3dv_size, args.downscale, args.seed)
        marker.write_text(json.dumps(settings))
        print(f"Fixture {layout}: written in {time.perf_counter() - started:.1f} s (not timed below): rendered at "
              f"1/{args.downscale} of the frame size by clipstore.synthetic, upsampled with NumPy", flush=True)
    return sources


def report(args: argparse.Namespace, throughput: list, sizes: list, source_bytes: dict[str, int]) -> None:
    shape = {"scannet": (args.scannet_frames, *args.scannet_size), "dl3dv": (args.dl3dv_frames, *args.dl3dv_size)}
    what = {"scannet": f"JPEG q{args.quality} frames, uint16 instance masks, poses, intrinsics, tag counts",
            "dl3dv": "safetensors: uint8 images, float32 depth, points, confidence, intrinsics, extrinsics"}
    for layout in args.layouts:
        t, h, w = shape[layout]
        print(f"  {layout}: {args.clips} scenes x {t} frames of {h}x{w} ({what[layout]}): "
              f"{source_bytes[layout] / MB:.1f} MB on disk, {source_bytes[layout] / MB / args.clips:.1f} MB per "
              "scene")
    cache = "kept in the page cache (--warm)" if args.warm else \
        "fsync'ed and evicted from the page cache before each run"
    print(f"Method: wall time of ingest(path, reader, StoreOptions(...), threads=N, progress=False); source "
          f"files {cache}; the store is written to the page cache (no fsync); CPU/wall = the process's CPU "
          f"seconds (all threads) per wall second; kernel MB = /proc/self/io "
          f"read_bytes delta (includes readahead); store MB = bytes of the store's files. MB = 10^6 bytes.\n")

    print("THROUGHPUT  (ground_truth: all)")
    rows = []
    for layout, threads, out in throughput:
        seconds, source = out["seconds"], source_bytes[layout] / MB
        rows.append([layout, str(threads), f"{seconds:.2f}", f"{out['cpu'] / seconds:.2f}",
                     f"{args.clips / seconds:.2f}", f"{source:.0f}",
                     f"{source / seconds:.0f}", "-" if out["kernel"] is None else f"{out['kernel'] / MB:.0f}",
                     f"{out['store'] / MB:.0f}", f"{out['store'] / MB / seconds:.0f}"])
    print_table(["layout", "threads", "wall s", "CPU/wall", "clips/s", "source MB", "source MB/s",
                 "kernel MB read", "store MB", "store MB/s"], rows, "lrrrrrrrrr")
    for layout in args.layouts:
        runs = [(threads, out) for name, threads, out in throughput if name == layout]
        best_threads, best = min(runs, key=lambda run: run[1]["seconds"])
        scaling = ""
        if len(runs) > 1:
            (few, slow), (many, fast) = min(runs, key=lambda run: run[0]), max(runs, key=lambda run: run[0])
            scaling = f"; {many} threads against {few}: {slow['seconds'] / fast['seconds']:.2f}x the clips/s"
        print(f"{layout}: best {args.clips / best['seconds']:.2f} clips/s "
              f"({best['seconds'] / args.clips:.2f} s per scene, {source_bytes[layout] / MB / best['seconds']:.0f} "
              f"source MB/s, {best['store'] / MB / best['seconds']:.0f} store MB/s) at {best_threads} thread(s)"
              f"{scaling}")

    print(f"\nSTORE SIZE PER SCENE  ({max(args.threads)} thread(s); uncompressed = the stored arrays' shapes x "
          f"itemsizes; 'of raw' = against the uncompressed ground_truth: all store)")
    rows = []
    reference = {}
    for layout, name, options, out in sizes:
        frames = shape[layout][0] if options is None else options.length(shape[layout][0])
        truth = frames if options is None or options.ground_truth == "all" else len(query_frames(frames))
        if options is None:
            reference[layout] = out
        base = reference[layout]
        rows.append([layout, name, f"{frames}", f"{truth}", f"{out['uncompressed'] / MB:.1f}",
                     f"{out['store'] / args.clips / MB:.1f}",
                     f"{out['uncompressed'] * args.clips / out['store']:.2f}",
                     f"{out['store'] / base['store']:.1%}", f"{out['uncompressed'] / base['uncompressed']:.1%}",
                     f"{out['store'] / args.clips / base['uncompressed']:.1%}", f"{out['seconds']:.2f}",
                     f"{args.clips / out['seconds']:.2f}"])
    print_table(["layout", "store options", "frames", "GT frames", "uncompressed MB", "on disk MB",
                 "compression", "disk vs all", "uncompr. vs all", "disk of raw", "wall s", "clips/s"],
                rows, "llrrrrrrrrrr")
    print("on disk MB per scene, by array:")
    for layout, name, _, out in sizes:
        parts = ", ".join(f"{array} {size / args.clips / MB:.1f}" for array, size in out["by_array"].items()
                          if size / args.clips >= 0.05 * MB)
        print(f"  {layout:8} {name:36} {parts}")
    if "dl3dv" in args.layouts:
        t, h, w = shape["dl3dv"]
        raw = t * h * w * (3 + 4 + 12 + 4)
        query = [out for layout, name, options, out in sizes
                 if layout == "dl3dv" and options is not None and options.ground_truth == "query"
                 and options.max_frames is None][0]
        base = reference["dl3dv"]
        print(f"dl3dv raw scene: {t}*{h}*{w}*(3 + 4 + 12 + 4) bytes = {raw / MB:.1f} MB (uint8 images, float32 "
              f"depth, points, confidence). ground_truth: query keeps {len(query_frames(t))} GT frames: "
              f"{query['uncompressed'] / MB:.1f} MB uncompressed = {query['uncompressed'] / raw:.1%} of raw; "
              f"on disk {query['store'] / args.clips / MB:.1f} MB per scene = "
              f"{query['store'] / args.clips / raw:.1%} of raw, {query['store'] / base['store']:.1%} of the "
              f"ground_truth: all store ({base['store'] / args.clips / MB:.1f} MB)")
    if "scannet" in args.layouts:
        query = [out for layout, name, options, out in sizes if layout == "scannet" and options is not None][0]
        base = reference["scannet"]
        print(f"scannet: ground_truth: query stores {query['store'] / args.clips / MB:.1f} MB per scene against "
              f"{base['store'] / args.clips / MB:.1f} MB with all ({query['store'] / base['store']:.1%}); "
              f"uncompressed {query['uncompressed'] / MB:.1f} against {base['uncompressed'] / MB:.1f} MB")


if __name__ == "__main__":
    main()
