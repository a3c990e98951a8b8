#!/usr/bin/env python
"""Fused sources: reading a fusion computed on the fly against reading its materialised store, and how long a
torch probe on a fused source waits for its data.

Builds a synthetic clip store and two feature stores of paper-like shape in a temporary directory: a video
model's (latent frames 0, 1, 5, 9, 13 on a ``--vgm-grid`` grid) and a VLM's (the same query frames on a
coarser ``--vlm-grid`` grid). Both hold random float16 features, one chunk per frame, as the extractors write
them. Through the project's own data path (:class:`probes.data.SampleReader`, frame-protocol views) it
measures:

1. **reading**: samples/s and MB/s of fused features for one epoch of 4-view samples, for:
   - each branch alone;
   - the fusion on the fly (``lnconcat``: area-averaged to the VLM grid, LayerNorm per branch, concat);
   - the materialised fusion store, and the one-off time to write it;
2. **waiting**: a light geometry probe's training run (which prefetches the next batch on a background
   thread) on the fusion on the fly and on the materialised store, and the fraction of each run's time spent
   waiting for data.

Run: ``.venv/bin/python bench/fusion.py`` (about a minute on 2 cores with the defaults). It prints figures
and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchlib import cores, print_table  # noqa: E402
from clipstore import open_clip_store  # noqa: E402
from clipstore.generate import write_synthetic_store  # noqa: E402
from clipstore.synthetic import SyntheticSpec  # noqa: E402
from extractors.base import ClipFeatures  # noqa: E402
from extractors.featurestore import FeatureStoreWriter  # noqa: E402
from extractors.ids import SourceId  # noqa: E402
from probes.data import Sample, SampleReader  # noqa: E402
from probes.fusion import FusedSource, Fusion, write_fused_store  # noqa: E402
from probes.sampler import FrameProtocol  # noqa: E402
from probes.sources import FeatureSource, Source  # noqa: E402
from probes.tasks import resolve_task  # noqa: E402

FRAMES = np.array([0, 1, 5, 9, 13])  # a 17-frame clip's latent frames, and the VLM's query frames


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips in the synthetic store (default 24)")
    parser.add_argument("--vgm-grid", type=int, nargs=2, default=(16, 24), help="video model grid (16 24)")
    parser.add_argument("--vgm-channels", type=int, default=1536, help="video model channels (1536, Wan-1.3B)")
    parser.add_argument("--vlm-grid", type=int, nargs=2, default=(8, 12), help="VLM grid (8 12)")
    parser.add_argument("--vlm-channels", type=int, default=2048, help="VLM channels (2048, Qwen3-VL-2B)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each training run (default 2)")
    parser.add_argument("--tmpdir", default=None)
    return parser.parse_args()


def branch_store(path: Path, name: str, clips: int, grid: tuple[int, int], channels: int, seed: int) -> FeatureSource:
    writer = FeatureStoreWriter(path, clip_index=list(range(clips)), layers=[0], fingerprint={"model": name})
    rng = np.random.default_rng(seed)
    for clip in range(clips):
        values = rng.standard_normal((len(FRAMES), *grid, channels), dtype=np.float32)
        writer.write_clip(clip, ClipFeatures({0: values}, FRAMES))
    writer.finish({"model": name, "family": "bench", "paradigm": "vgm", "timestep": None, "seed": 0,
                   "random_init": True, "checkpoint": None})
    return FeatureSource(SourceId(name, "none", 0), [path])


def reading(source: Source, samples: list[Sample]) -> tuple[float, float]:
    """(samples/s, MB/s of the features handed to the probe, counted as float16)."""
    started = time.perf_counter()
    size = sum(source.views(s.clip, s.views).size for s in samples)
    seconds = time.perf_counter() - started
    return len(samples) / seconds, size * 2 / seconds / 1e6


def waiting(source: Source, store, samples, options, settings, clips: int) -> float:
    from probes.nets import build_probe_net
    from probes.training import train

    task = resolve_task("geometry", {"probes": {"light": {}}})[0]
    architecture = {key: settings[key] for key in task.net_kind("light").architecture}
    net = build_probe_net("light", "geometry", source.channels, architecture)
    protocol = FrameProtocol.from_options(options)
    run = train(net, SampleReader(source, store, task.make_targets(options)),
                train_samples=lambda epoch: Sample.of(protocol.training_views(range(clips), 17, 0, epoch)),
                val_samples=samples[:settings["batch_size"]], loss_fn=task.loss_fn(settings), settings=settings,
                seed=0, device=torch.device("cpu"))
    return run.data_seconds / (run.data_seconds + run.step_seconds)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(cores())
    root = Path(tempfile.mkdtemp(prefix="fusion-bench-", dir=args.tmpdir))
    try:
        spec = SyntheticSpec(clips=args.clips, frames=17, height=64, width=64, seed=0)
        store = open_clip_store(write_synthetic_store(root / "clips.zarr", spec, progress=False))
        vgm = branch_store(root / "vgm.zarr", "vgm", args.clips, tuple(args.vgm_grid), args.vgm_channels, 1)
        vlm = branch_store(root / "vlm.zarr", "vlm", args.clips, tuple(args.vlm_grid), args.vlm_channels, 2)
        fusion = Fusion("vgm+vlm", (vgm.id, vlm.id), "lnconcat", None, True)
        on_the_fly = FusedSource(fusion, [vgm, vlm])
        started = time.perf_counter()
        path = write_fused_store(on_the_fly, root / "fused.zarr", clip_index=list(range(args.clips)),
                                 dataset="bench", progress=False)
        materialise_seconds = time.perf_counter() - started
        materialised = FeatureSource(fusion.id, [path])

        task, options, probes = resolve_task("geometry", {"options": {"views": 4, "min_gap": 4}, "probes": {
            "light": {"epochs": args.epochs, "batch_size": args.batch_size, "device": "cpu", "patience": 0}}})
        samples = Sample.of(FrameProtocol.from_options(options).training_views(range(args.clips), 17, 0, 0))
        rates = {name: reading(source, samples) for name, source in
                 (("video model branch alone", vgm), ("VLM branch alone", vlm),
                  ("fusion on the fly", on_the_fly), ("materialised fusion", materialised))}
        waits = {name: waiting(source, store, samples, options, probes["light"], args.clips)
                 for name, source in (("on the fly", on_the_fly), ("materialised", materialised))}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"Fused source {fusion.mode}: video model {args.vgm_grid[0]}x{args.vgm_grid[1]}x{args.vgm_channels} + "
          f"VLM {args.vlm_grid[0]}x{args.vlm_grid[1]}x{args.vlm_channels} -> {on_the_fly.grid[0]}x"
          f"{on_the_fly.grid[1]}x{on_the_fly.channels} float16; {args.clips} clips, 4 views per sample, "
          f"{cores()} cores\n")
    print_table(["read", "samples/s", "MB/s (fused features)"],
                [[name, f"{rate:.1f}", f"{mb:.0f}"] for name, (rate, mb) in rates.items()], "lrr")
    ratio = rates["materialised fusion"][0] / rates["fusion on the fly"][0]
    print(f"\nmaterialised / on the fly (samples/s): {ratio:.2f}x; writing the materialised store took "
          f"{materialise_seconds:.1f} s ({args.clips / materialise_seconds:.1f} clips/s)")
    print(f"light geometry probe, {args.epochs} epochs, batch {args.batch_size}: time waiting for data "
          + ", ".join(f"{name} {fraction:.1%}" for name, fraction in waits.items()))


if __name__ == "__main__":
    main()
