#!/usr/bin/env python
"""Probe data loading against the training step: does a torch probe wait for its data?

Builds a synthetic clip store and one feature store of paper-like shape (random float16 features,
``--grid`` tokens x ``--channels`` per frame, one chunk per frame as the extractors write them) in a temporary
directory, then through the project's own data path (:class:`probes.data.SampleReader`, frame protocol views,
geometry targets) measures

1. **loading**: samples/s and feature MB/s of ``SampleReader.batch`` for the training samples of one epoch
   (features: only the sampled views' chunks are read; targets: cached after the first epoch, so the
   first and a second pass are shown);
2. **training step**: the light geometry probe's forward + backward + AdamW step on one batch already in
   memory (seconds per batch);
3. **waiting**: a real training run (:func:`probes.training.train`, which prefetches the next batch on a
   background thread) and the fraction of its training time spent waiting for data.

Run: ``.venv/bin/python bench/probe_data.py`` (about a minute on 2 cores with the defaults). It prints
figures and asserts nothing about speed.
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
from probes.data import Sample, SampleReader  # noqa: E402
from probes.sampler import FrameProtocol  # noqa: E402
from probes.sources import FeatureSource, SourceId  # noqa: E402
from probes.tasks import resolve_task  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips in the synthetic store (default 24)")
    parser.add_argument("--grid", type=int, nargs=2, default=(16, 16), help="feature grid h w (default 16 16)")
    parser.add_argument("--channels", type=int, default=1536, help="feature channels (default 1536, Wan-1.3B)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the training run (default 2)")
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores")
    return parser.parse_args()


def build_stores(root: Path, args: argparse.Namespace) -> tuple[Path, FeatureSource]:
    spec = SyntheticSpec(clips=args.clips, frames=17, height=64, width=64, seed=0)
    store_path = write_synthetic_store(root / "clips.zarr", spec, progress=False)
    frame_index = np.array([0, 1, 5, 9, 13])  # a VGM's latent frames of a 17-frame clip
    writer = FeatureStoreWriter(root / "features.zarr", clip_index=list(range(args.clips)), layers=[0],
                                fingerprint={})
    rng = np.random.default_rng(0)
    for clip in range(args.clips):
        values = rng.standard_normal((len(frame_index), *args.grid, args.channels), dtype=np.float32)
        writer.write_clip(clip, ClipFeatures({0: values}, frame_index))
    writer.finish({"model": "bench", "family": "bench", "paradigm": "baseline", "timestep": None,
                   "random_init": True})
    return store_path, FeatureSource(SourceId("bench", "none", 0), [root / "features.zarr"])


def loading(reader: SampleReader, samples: list[Sample], batch_size: int) -> tuple[float, float]:
    started = time.perf_counter()
    feature_bytes = 0
    for start in range(0, len(samples), batch_size):
        features, _ = reader.batch(samples[start:start + batch_size])
        feature_bytes += features.size * 2  # float16 on disk
    seconds = time.perf_counter() - started
    return len(samples) / seconds, feature_bytes / seconds / 1e6


def main() -> None:
    args = parse_args()
    torch.set_num_threads(cores())
    root = Path(tempfile.mkdtemp(prefix="probe-data-", dir=args.tmpdir))
    try:
        store_path, source = build_stores(root, args)
        task, options, probes = resolve_task("geometry", {"options": {"views": 4, "min_gap": 4},
                                                          "probes": {"light": {"epochs": args.epochs,
                                                                               "batch_size": args.batch_size,
                                                                               "device": "cpu"}}})
        settings = probes["light"]
        store = open_clip_store(store_path)
        protocol = FrameProtocol.from_options(options)
        reader = SampleReader(source, store, task.make_targets(options))
        samples = Sample.of(protocol.training_views(range(args.clips), 17, 0, 0))
        first = loading(reader, samples, args.batch_size)
        second = loading(reader, samples, args.batch_size)

        from probes.nets import build_probe_net
        from probes.training import to_tensors, train

        net = build_probe_net("light", "geometry", args.channels, {k: settings[k] for k in
                                                                   ("dim", "heads", "blocks", "mlp_ratio",
                                                                    "max_views", "dropout")})
        loss_fn = task.loss_fn(settings)
        optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
        features, targets = to_tensors(reader.batch(samples[:args.batch_size]), torch.device("cpu"))
        generator = torch.Generator().manual_seed(0)
        step_times = []
        for _ in range(5):
            started = time.perf_counter()
            loss = loss_fn(net(features), targets, generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step_times.append(time.perf_counter() - started)
        step = float(np.median(step_times[1:]))

        run = train(net, SampleReader(source, store, task.make_targets(options)),
                    train_samples=lambda e: Sample.of(protocol.training_views(range(args.clips), 17, 0, e)),
                    val_samples=samples[:args.batch_size], loss_fn=loss_fn, settings=settings, seed=0,
                    device=torch.device("cpu"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    mb_per_sample = 4 * np.prod(args.grid) * args.channels * 2 / 1e6
    print(f"Probe data path: {args.clips} clips, 4 views per sample, grid {args.grid[0]}x{args.grid[1]} x "
          f"{args.channels} channels float16 ({mb_per_sample:.1f} MB of features per sample), batch "
          f"{args.batch_size}, {cores()} cores\n")
    print_table(["measure", "value"], [
        ["loading, first pass (targets read)", f"{first[0]:.1f} samples/s, {first[1]:.0f} MB/s"],
        ["loading, later passes (targets cached)", f"{second[0]:.1f} samples/s, {second[1]:.0f} MB/s"],
        ["loading time per batch (later passes)", f"{args.batch_size / second[0] * 1e3:.1f} ms"],
        ["light geometry step per batch (fwd+bwd+AdamW)", f"{step * 1e3:.1f} ms"],
        ["loading / step", f"{args.batch_size / second[0] / step:.2f}"],
        [f"training run ({args.epochs} epochs): step time", f"{run.step_seconds:.2f} s"],
        ["training run: waiting for data (prefetched)", f"{run.data_seconds:.2f} s"],
        ["fraction of training time waiting for data",
         f"{run.data_seconds / (run.data_seconds + run.step_seconds):.1%}"],
    ], "lr")


if __name__ == "__main__":
    main()
