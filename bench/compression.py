#!/usr/bin/env python
"""Lossy feature-store compression: size, speed, and what it does to every probe metric.

For each setting (``lossless``, the default, and ``bitround`` at each ``--keepbits``; extractors/codecs.py)
it measures, on two kinds of features:

A. **Activation-like features at real width**: ``--activation-clips`` clips of shape ``--activation-shape``
   (default Wan-14B's width, 5 of its 21 latent frames of 30x52 tokens x 5120 channels), drawn by
   bench/featurestore.py's ``activations``: N(0, 1) x a log-normal per-channel scale, 4 "massive activation"
   channels x100 and 1e-4 of the values x20. No real checkpoint can be downloaded here. Bitround's error is
   relative to each value, so the distribution does not change the error, only the size: the heavy tails and
   the spread of channel scales set how many float16 exponents occur, and the exponent bits are what
   rounding cannot remove. It reports the on-disk ratio against lossless, write and read MB/s through
   ``FeatureStoreWriter`` and ``open_feature_store(...).read``, and the error: the largest relative error of
   normal float16 values, the relative RMS error and the smallest cosine similarity of a token to its
   lossless self.
B. **The demo's features**: the demo's synthetic dataset (config/config.yaml ``datasets.demo``), the
   calibration sources, the controls and the tiny random-init models (``--sources``), each built with
   ``build_tiny_model`` and extracted with ``run_extraction`` as the workflow does (wan-tiny at timestep 500
   and its last layer only, to save time). The lossless stores are then written again with each lossy
   setting through ``FeatureStoreWriter``; the extraction job would pass the same float16 values to it.
   Then the linear probes of the three tasks (config/config.yaml's task options and linear settings) run on
   every source and setting with ``probes.job.run_probe``, one worker process per core, and each metric is
   compared with the lossless run's 95% bootstrap interval. One more column, the lossless store probed with
   the next seed, shows how far training the probe differently moves the same metrics: the yardstick for
   calling a codec's change noise.

Part A also compares the compressor after rounding (plain zstd against Blosc's byte shuffle + zstd), the
reason for extractors/codecs.py's choice.

Run: ``.venv/bin/python bench/compression.py`` (about 4 minutes on 2 quiet cores with the defaults).
This is a benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
import zarr  # noqa: E402

from benchlib import cores, print_table  # noqa: E402
from clipstore.generate import write_synthetic_store  # noqa: E402
from clipstore.kinds import SYNTHETIC_OPTIONS, store_options  # noqa: E402
from clipstore.synthetic import SyntheticSpec  # noqa: E402
from extractors.base import ClipFeatures  # noqa: E402
from extractors.codecs import array_codecs, normalise_compression  # noqa: E402
from extractors.featurestore import FeatureStoreWriter, open_feature_store  # noqa: E402
from extractors.ids import SourceId, timestep_token  # noqa: E402
from extractors.job import run_extraction  # noqa: E402
from extractors.registry import ModelConfig, resolve_model  # noqa: E402
from extractors.tiny_models import tiny_model_name  # noqa: E402
from featurestore import activations  # noqa: E402  (bench/featurestore.py: the same activation-like data)

MB = 1e6
TASKS = ("tagging", "instance", "geometry")
DEFAULT_SOURCES = "oracle,pixels,random-patch,wan-tiny,qwen2.5-vl-tiny,siglip-tiny"
REFERENCE = "lossless, seed+1"  # what training the probe with another seed alone changes: the yardstick
# zarr-python warns whenever a numcodecs codec is built; docs/stores.md states what it means
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")


@dataclass
class Setting:
    name: str
    spec: dict[str, Any] | None


@dataclass
class StoreFigures:
    """Size and speed of one setting on one kind of features."""

    float16_bytes: int = 0
    disk_bytes: int = 0
    write_s: float = 0.0
    read_s: float = 0.0
    errors: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------
# Stores


def disk_bytes(path: Path) -> int:
    """Bytes of every file of a store (shards, metadata)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_clips(path: Path, clips: list[np.ndarray], frame_index: np.ndarray, layer: int,
                setting: Setting, attributes: dict[str, Any]) -> float:
    """Seconds to write ``clips`` (each (T', h, w, C)) as one store through FeatureStoreWriter."""
    start = time.perf_counter()
    writer = FeatureStoreWriter(path, clip_index=range(len(clips)), layers=[layer], compression=setting.spec,
                                fingerprint={"bench": "compression", "setting": setting.name})
    for position, values in enumerate(clips):
        writer.write_clip(position, ClipFeatures({layer: values}, frame_index[:len(values)]))
    writer.finish(attributes)
    return time.perf_counter() - start


def read_all(path: Path, layer: int) -> tuple[float, np.ndarray]:
    """(seconds, every clip) of a whole-store read through the reader probes use."""
    start = time.perf_counter()
    store = open_feature_store([path])
    values = store.read(layer, range(len(store.clip_index)))
    return time.perf_counter() - start, values


def error_figures(stored: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Largest relative error of normal float16 values, relative RMS error, smallest token cosine; clip by clip
    in float32 (exact enough for errors >= 1e-4, and a quarter of float64's memory)."""
    max_rel, squared_error, squared, min_cos = 0.0, 0.0, 0.0, 1.0
    for clip_stored, clip_exact in zip(stored, exact, strict=True):
        a, b = clip_stored.astype(np.float32), clip_exact.astype(np.float32)
        normal = np.abs(b) >= 2.0 ** -14
        max_rel = max(max_rel, float((np.abs(a - b)[normal] / np.abs(b[normal])).max(initial=0.0)))
        squared_error += float(np.square(a - b, dtype=np.float64).sum())
        squared += float(np.square(b, dtype=np.float64).sum())
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        min_cos = min(min_cos, float(cosine.min()))
    return {"max_rel": max_rel, "rms_rel": (squared_error / squared) ** 0.5, "min_cos": min_cos}


# --------------------------------------------------------------------------------------------------------
# A. Activation-like features


def bench_activations(args: argparse.Namespace, settings: list[Setting], tmp: Path
                      ) -> tuple[dict[str, StoreFigures], list[list[str]]]:
    """(figures per setting, rows of the compressor comparison)."""
    rng = np.random.default_rng(0)
    clips = [activations(rng, args.activation_shape).astype(np.float16) for _ in range(args.activation_clips)]
    frame_index = np.arange(args.activation_shape[0])
    exact = np.stack(clips)
    figures = {}
    for setting in settings:
        # the fastest of --repeats writes and reads: the first write of a process also pays for warming up
        write_s, read_s = [], []
        for repeat in range(args.repeats):
            path = tmp / "activations" / f"{setting.name}-{repeat}.zarr"
            write_s.append(write_clips(path, clips, frame_index, 0, setting, {"model": "activations"}))
            seconds, stored = read_all(path, 0)
            read_s.append(seconds)
        figures[setting.name] = StoreFigures(exact.nbytes, disk_bytes(path), min(write_s), min(read_s),
                                             error_figures(stored, exact))
    return figures, compressor_choice(clips, settings, tmp)


def compressor_choice(clips: list[np.ndarray], settings: list[Setting], tmp: Path) -> list[list[str]]:
    """Rows: on-disk ratio against float16 after bitround, with plain zstd against Blosc's byte shuffle +
    zstd (what extractors/codecs.py uses): the reason for that choice."""
    from zarr.codecs import BloscCodec, ZstdCodec

    data = np.stack(clips)
    rows = []
    for setting in settings:
        codecs = array_codecs(setting.spec)
        sizes = []
        for compressor in (ZstdCodec(level=1), BloscCodec(typesize=2, cname="zstd", clevel=1, shuffle="shuffle")):
            path = tmp / "compressors" / f"{setting.name}-{compressor.to_dict()['name']}.zarr"
            array = zarr.create_array(path, shape=data.shape, dtype="float16", chunks=(1, 1, *data.shape[2:]),
                                      filters=codecs["filters"], compressors=[compressor])
            array[:] = data
            sizes.append(data.nbytes / disk_bytes(path))
        rows.append([setting.name, f"{sizes[0]:.2f}x", f"{sizes[1]:.2f}x"])
    return rows


# --------------------------------------------------------------------------------------------------------
# B. The demo's features and probes


def demo_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def make_dataset(config: dict[str, Any], tmp: Path) -> Path:
    """The demo's synthetic clip store, as the dataset rule writes it."""
    entry = config["datasets"]["demo"]
    spec = SyntheticSpec(**{key: entry[key] for key in SYNTHETIC_OPTIONS if key in entry})
    return write_synthetic_store(tmp / "demo.zarr", spec, store_options(entry), progress=False)


def demo_models(config: dict[str, Any], names: list[str], tmp: Path) -> list[ModelConfig]:
    """The named demo models resolved from the config; tiny checkpoints built into ``tmp`` as the tiny_model
    rule builds them, wan-tiny cut to timestep 500 and its last layer."""
    from extractors.tiny_models import build_tiny_model

    models = []
    for name in names:
        entry = dict(config["models"][name])
        if "checkpoint" in entry:
            tiny = tiny_model_name(entry["checkpoint"])
            location = tmp / "models" / tiny
            if not location.exists():
                build_tiny_model(tiny, location, seed=config.get("seed", 0))
            entry["checkpoint"] = str(location)
        if "timesteps" in entry:
            entry["timesteps"] = [500]
        model = resolve_model(name, entry, seed=config.get("seed", 0))
        models.append(resolve_model(name, {**entry, "layers": [model.layers[-1]]}, seed=config.get("seed", 0)))
    return models


def extract(models: list[ModelConfig], clip_store: Path, num_clips: int, seed: int, tmp: Path) -> dict[str, Path]:
    """One lossless store per model (its one timestep and layer), through the extraction job."""
    stores = {}
    for model in models:
        path = tmp / "extracted" / model.name / f"{model.timestep_tokens[0]}.zarr"
        run_extraction(clip_store=clip_store, outputs={model.timesteps[0]: path}, dataset="demo", model=model,
                       shard=0, clips_per_shard=num_clips, seed=seed, progress=False, threads=cores())
        stores[model.name] = path
    return stores


def recode(source: Path, path: Path, setting: Setting, layer: int) -> tuple[float, int]:
    """(seconds, float16 bytes): write the lossless store ``source`` again with ``setting``."""
    store = open_feature_store([source])
    clips = [store.read(layer, [row])[0][:int(count)] for row, count in enumerate(store.frame_counts)]
    return write_clips(path, clips, store.frame_index, layer, setting, dict(store.attrs)), sum(c.nbytes for c in clips)


@dataclass(frozen=True)
class ProbeJob:
    """One linear probe: a task on one source stored with one setting."""

    setting: str
    source: str
    task: str
    store: str
    clip_store: str
    out: str
    seed_offset: int = 0  # the reference column: the lossless store probed with the next seed


def run_probe_job(job: ProbeJob) -> tuple[ProbeJob, dict[str, Any]]:
    """The metrics.json record of one probe, with the demo config's task options and linear settings."""
    from probes.job import run_probe
    from probes.tasks import resolve_task

    config = demo_config()
    entry = config["tasks"][job.task]
    _, options, probes = resolve_task(job.task, {"options": entry.get("options"),
                                                 "probes": {"linear": entry["probes"].get("linear") or {}}})
    record = run_probe(dataset="demo", clip_store=job.clip_store, source={"id": job.source, "stores": [job.store]},
                       task=job.task, probe="linear", settings=probes["linear"], task_options=options,
                       seed=config.get("seed", 0) + job.seed_offset, out_dir=job.out, threads=1)
    return job, record


def one_thread() -> None:
    """Probe workers run side by side, one per core: one BLAS thread each, not a pool each."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def probe_everything(jobs: list[ProbeJob]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{setting: {source: {task: record}}}, the probes run on every core (spawned workers: the parent's
    zarr threads must not be forked)."""
    records: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cores(), mp_context=context, initializer=one_thread) as pool:
        for job, record in pool.map(run_probe_job, jobs):
            records.setdefault(job.setting, {}).setdefault(job.source, {})[job.task] = record
    return records


def bench_demo(args: argparse.Namespace, settings: list[Setting], tmp: Path
               ) -> tuple[dict[str, StoreFigures], dict[str, dict[str, dict[str, dict[str, Any]]]], list[str]]:
    """(figures per setting over every source's store, {setting: {source: {task: record}}}, source ids)."""
    config = demo_config()
    started = time.perf_counter()
    clip_store = make_dataset(config, tmp)
    num_clips = config["datasets"]["demo"]["clips"]
    models = demo_models(config, args.sources, tmp)
    lossless = extract(models, clip_store, num_clips, config.get("seed", 0), tmp)
    print(f"demo: dataset, tiny models and lossless extraction of {len(models)} sources in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    figures = {s.name: StoreFigures() for s in settings}
    jobs, sources = [], []
    for setting in settings:
        for model in models:
            layer = model.layers[0]
            source = str(SourceId(model.name, timestep_token(model.timesteps[0]), layer))
            path = tmp / "features" / setting.name / model.name / lossless[model.name].name
            # the lossless store was written by extraction; the lossless row times a rewrite like the others
            write_s, nbytes = recode(lossless[model.name], path, setting, layer)
            read_s, _ = read_all(path, layer)
            fig = figures[setting.name]
            fig.float16_bytes += nbytes
            fig.disk_bytes += disk_bytes(path)
            fig.write_s += write_s
            fig.read_s += read_s
            sources += [source] if source not in sources else []
            jobs += [ProbeJob(setting.name, source, task, str(path), str(clip_store),
                              str(tmp / "probes" / setting.name / model.name / task)) for task in TASKS]
    jobs += [ProbeJob(REFERENCE, job.source, job.task, job.store, job.clip_store, job.out + "-seed1", 1)
             for job in jobs if job.setting == settings[0].name]
    print(f"demo: stores written with every setting ({time.perf_counter() - started:.0f} s); "
          f"{len(jobs)} probes on {cores()} workers", flush=True)
    records = probe_everything(jobs)
    print(f"demo: probed ({time.perf_counter() - started:.0f} s)", flush=True)
    return figures, records, sources


# --------------------------------------------------------------------------------------------------------
# Report


def size_rows(figures: dict[str, StoreFigures], settings: list[Setting]) -> list[list[str]]:
    base = figures[settings[0].name].disk_bytes
    rows = []
    for setting in settings:
        fig = figures[setting.name]
        errors = fig.errors
        rows.append([setting.name, f"{fig.disk_bytes / MB:.2f}", f"{fig.float16_bytes / fig.disk_bytes:.2f}x",
                     f"{base / fig.disk_bytes:.2f}x", f"{fig.float16_bytes / MB / fig.write_s:.0f}",
                     f"{fig.float16_bytes / MB / fig.read_s:.0f}",
                     *([f"{errors['max_rel']:.2e}", f"{errors['rms_rel']:.2e}", f"{errors['min_cos']:.6f}"]
                       if errors else [])])
    return rows


def print_sizes(title: str, figures: dict[str, StoreFigures], settings: list[Setting]) -> None:
    print(f"\n{title}")
    header = ["setting", "disk MB", "vs float16", "vs lossless", "write MB/s", "read MB/s"]
    with_errors = bool(figures[settings[-1].name].errors)
    if with_errors:
        header += ["max rel err", "rel RMS err", "min token cos"]
    print_table(header, size_rows(figures, settings), "l" + "r" * (len(header) - 1))


@dataclass
class Tally:
    """How one column's metrics fall against the lossless intervals."""

    inside: int = 0
    total: int = 0
    zero_width: int = 0  # misses on an interval of zero width (e.g. T-SR 0 on every clip): any change misses
    by_source: dict[str, int] = field(default_factory=dict)
    changes: list[float] = field(default_factory=list)  # |change| of every metric

    def add(self, source: str, ok: bool, low: float, high: float, change: float) -> None:
        self.total += 1
        self.inside += ok
        self.changes.append(abs(change))
        if not ok:
            self.zero_width += low == high
            self.by_source[source] = self.by_source.get(source, 0) + 1


def metric_rows(records: dict[str, dict[str, dict[str, dict[str, Any]]]], columns: list[str],
                sources: list[str]) -> tuple[list[list[str]], dict[str, Tally]]:
    """One row per source, task and metric: the lossless value and interval, then each column's change
    (``!`` outside the lossless interval); and each column's tally."""
    rows, tallies = [], {column: Tally() for column in columns[1:]}
    for source in sources:
        for task in TASKS:
            base = records[columns[0]][source][task]
            for metric, value in base["metrics"].items():
                low, high = base["ci"][metric]
                row = [source, task, metric, f"{value:.4f}", f"[{low:.4f}, {high:.4f}]"]
                for column in columns[1:]:
                    other = records[column][source][task]["metrics"][metric]
                    ok = bool(low <= other <= high) or bool(np.isnan(other) and np.isnan(value))
                    tallies[column].add(source.split("@")[0], ok, low, high, other - value)
                    row.append(f"{other - value:+.4f}{'' if ok else ' !'}")
                rows.append(row)
    return rows, tallies


def print_metrics(records: dict[str, dict[str, dict[str, dict[str, Any]]]], columns: list[str],
                  sources: list[str]) -> dict[str, Tally]:
    rows, tallies = metric_rows(records, columns, sources)
    print(f"\nPROBE METRICS  linear probes on the demo dataset: the lossless value, its 95% bootstrap interval "
          f"(1000 resamples over validation clips), and each column's change ('!' = outside that interval); "
          f"'{REFERENCE}' is the lossless store with the probe trained on the next seed")
    header = ["source", "task", "metric", "lossless", "95% interval", *columns[1:]]
    print_table(header, rows, "lll" + "r" * (len(header) - 3))
    return tallies


def print_summary(activation: dict[str, StoreFigures], demo: dict[str, StoreFigures],
                  tallies: dict[str, Tally], settings: list[Setting]) -> None:
    print("\nSUMMARY  size against lossless; probe metrics inside the lossless run's 95% interval")
    base_a, base_d = activation[settings[0].name].disk_bytes, demo[settings[0].name].disk_bytes
    rows = []
    for column, tally in tallies.items():
        sizes = (["1.00x", "1.00x"] if column == REFERENCE else
                 [f"{base_a / activation[column].disk_bytes:.2f}x", f"{base_d / demo[column].disk_bytes:.2f}x"])
        misses = ", ".join(f"{source} {n}" for source, n in tally.by_source.items()) or "-"
        changes = np.nan_to_num(tally.changes)
        rows.append([column, *sizes, f"{tally.inside}/{tally.total}", str(tally.zero_width),
                     f"{changes.mean():.4f}", f"{changes.max():.4f}", misses])
    print_table(["column", "smaller (activations)", "smaller (demo)", "metrics inside", "misses on zero-width",
                 "mean |change|", "largest |change|", "misses by source"], rows, "lrrrrrrl")
    good = [s.name for s in settings[1:] if tallies[s.name].inside == tallies[s.name].total
            and base_a / activation[s.name].disk_bytes >= 2]
    print("settings >= 2x smaller on activations with every metric inside its interval: "
          + (", ".join(good) if good else "none"))


# --------------------------------------------------------------------------------------------------------
# Main


def parse_shape(text: str) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--activation-shape {text!r}: expected T,h,w,C") from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--activation-shape {text!r}: expected four positive integers T,h,w,C")
    return shape  # type: ignore[return-value]


def parse_settings(text: str) -> list[Setting]:
    settings = [Setting("lossless", None)]
    for part in text.split(","):
        spec = normalise_compression({"codec": "bitround", "keepbits": int(part)}, owner="--keepbits")
        settings.append(Setting(f"bitround-{int(part)}", spec))
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keepbits", default="5,3,2",
                        help="bitround settings to compare with lossless (default 5,3,2)")
    parser.add_argument("--sources", default=DEFAULT_SOURCES, type=lambda t: t.split(","),
                        help=f"demo models to extract and probe (default {DEFAULT_SOURCES})")
    parser.add_argument("--activation-shape", default=(5, 30, 52, 5120), type=parse_shape,
                        help="T,h,w,C of the activation-like clips (default 5,30,52,5120)")
    parser.add_argument("--activation-clips", default=2, type=int, help="activation-like clips (default 2)")
    parser.add_argument("--repeats", default=2, type=int,
                        help="writes and reads of the activation-like store per setting; the fastest is shown")
    parser.add_argument("--tmpdir", default=None, help="where the stores go (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores")
    args = parser.parse_args(argv)
    settings = parse_settings(args.keepbits)
    tmp = Path(tempfile.mkdtemp(prefix="bench-compression-", dir=args.tmpdir))
    started = time.perf_counter()
    try:
        print(f"Compression benchmark  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, {cores()} CPUs, "
              f"Python {platform.python_version()}")
        print(f"settings: {', '.join(f'{s.name} {s.spec or {}}' for s in settings)}; stores under {tmp}")
        activation, choice = bench_activations(args, settings, tmp)
        shape = "x".join(map(str, args.activation_shape))
        print_sizes(f"A. ACTIVATION-LIKE  {args.activation_clips} clips of {shape} float16 "
                    f"({activation['lossless'].float16_bytes / MB:.0f} MB): N(0,1) x log-normal channel scale, "
                    f"4 channels x100, 1e-4 of values x20; MB/s of float16, fastest of {args.repeats}",
                    activation, settings)
        print("\nA'. COMPRESSOR AFTER ROUNDING  ratio against float16 of the same clips: plain zstd-1, and Blosc "
              "byte shuffle + zstd-1 (the bitround pipeline)")
        print_table(["setting", "zstd-1", "shuffle + zstd-1"], choice, "lrr")
        demo, records, sources = bench_demo(args, settings, tmp)
        print_sizes(f"B. DEMO FEATURES  {len(sources)} sources ({', '.join(sources)}), "
                    f"{demo['lossless'].float16_bytes / MB:.1f} MB float16 in all; write = rewriting each lossless "
                    f"store through FeatureStoreWriter (small stores: per-clip overhead, not codecs, sets MB/s)",
                    demo, settings)
        columns = [settings[0].name, REFERENCE, *[s.name for s in settings[1:]]]
        tallies = print_metrics(records, columns, sources)
        print_summary(activation, demo, tallies, settings)
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
