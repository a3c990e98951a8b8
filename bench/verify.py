#!/usr/bin/env python
"""The cost of verifying stores on read: layout checks at open, a shard-exists check per clip and array,
and a finiteness check of every feature frame read, against the same reads without them.

Writes one feature store (``--clips`` clips of ``--frames`` feature frames of ``--grid`` tokens x
``--channels`` float16, one layer) and one synthetic clip store, then times the probe read path: for every
clip, ``--views`` feature frames through :meth:`FeatureStore.read_frames` (verified) and through
:func:`clipstore.store.read_frames` on the same Zarr array (unverified), and the same for the clip store's
``depth`` through :meth:`ClipStore.select`. Also times opening each store (layout checks included).

Run: ``.venv/bin/python bench/verify.py`` (about 30 s on 2 cores). It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchlib import cores, med, print_table, timed  # noqa: E402
from clipstore import open_clip_store  # noqa: E402
from clipstore.generate import write_synthetic_store  # noqa: E402
from clipstore.store import read_frames  # noqa: E402
from clipstore.synthetic import SyntheticSpec  # noqa: E402
from extractors import ClipFeatures, FeatureStoreWriter, open_feature_store  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24, help="clips in each store (default 24)")
    parser.add_argument("--frames", type=int, default=21, help="feature frames per clip (default 21, Wan 81 frames)")
    parser.add_argument("--grid", type=int, nargs=2, default=[15, 26], help="tokens per feature frame (h w)")
    parser.add_argument("--channels", type=int, default=1536, help="channels (default 1536, Wan-1.3B)")
    parser.add_argument("--views", type=int, default=4, help="feature frames read per clip (default 4)")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def median_time(fn, repeats: int) -> float:
    return med([timed(fn)[0] for _ in range(repeats)])


def write_features(path: Path, args: argparse.Namespace) -> Path:
    rng = np.random.default_rng(0)
    frame_index = np.arange(args.frames) * 4
    writer = FeatureStoreWriter(path, clip_index=range(args.clips), layers=[0], fingerprint={})
    for clip in range(args.clips):
        values = rng.standard_normal((args.frames, *args.grid, args.channels)).astype(np.float32)
        writer.write_clip(clip, ClipFeatures({0: values}, frame_index))
    return writer.finish({"model": "bench", "timestep": None})


def main() -> None:
    args = parse_args()
    positions = np.linspace(0, args.frames - 1, args.views).round().astype(int).tolist()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        features = write_features(Path(tmp) / "f.zarr", args)
        clips = write_synthetic_store(Path(tmp) / "c.zarr", SyntheticSpec(clips=args.clips, frames=17, height=64,
                                                                           width=64), progress=False)
        open_features = median_time(lambda: open_feature_store([features]), args.repeats)
        store = open_feature_store([features])
        array = store.shards[0]["layer_0"]
        verified = median_time(lambda: [store.read_frames(0, c, positions) for c in range(args.clips)],
                               args.repeats)
        raw = median_time(lambda: [read_frames(array, [c], positions) for c in range(args.clips)], args.repeats)
        first = median_time(lambda: (store._written.clear(),  # every clip's shard checked again
                                     [store.read_frames(0, c, positions) for c in range(args.clips)]),
                            args.repeats)
        megabytes = args.clips * args.views * np.prod(args.grid) * args.channels * 2 / 1e6
        rows.append(["features: open (layout checks)", f"{open_features * 1e3:.1f} ms", "", ""])
        rows.append(["features: read, verified (shard known)", f"{verified * 1e3:.1f} ms",
                     f"{megabytes / verified:.0f} MB/s", f"{verified / raw:.3f}x"])
        rows.append(["features: read, verified (shard checked)", f"{first * 1e3:.1f} ms",
                     f"{megabytes / first:.0f} MB/s", f"{first / raw:.3f}x"])
        rows.append(["features: read, unverified", f"{raw * 1e3:.1f} ms", f"{megabytes / raw:.0f} MB/s", "1x"])
        open_clips = median_time(lambda: open_clip_store(clips), args.repeats)
        clip_store = open_clip_store(clips)
        depth = clip_store.zarr_array("depth")
        views = [0, 5, 9, 13]
        selected = median_time(lambda: [clip_store.select("depth", [c], views) for c in range(args.clips)],
                               args.repeats)
        direct = median_time(lambda: [read_frames(depth, [c], views) for c in range(args.clips)], args.repeats)
        rows.append(["clip store: open (layout checks)", f"{open_clips * 1e3:.1f} ms", "", ""])
        rows.append(["clip store: select depth, verified", f"{selected * 1e3:.1f} ms", "", f"{selected / direct:.3f}x"])
        rows.append(["clip store: read depth, unverified", f"{direct * 1e3:.1f} ms", "", "1x"])
    print(f"verification on read: {args.clips} clips, {args.views} of {args.frames} feature frames of "
          f"{args.grid[0]}x{args.grid[1]}x{args.channels} float16 per clip, {cores()} cores, median of "
          f"{args.repeats}")
    print_table(["what", "time", "throughput", "vs unverified"], rows, "lrrr")


if __name__ == "__main__":
    main()
