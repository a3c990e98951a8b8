#!/usr/bin/env python
"""What one VLM / vision-tower feature extraction costs against the bare model forward, route by route.

For each route — Qwen2.5-VL, Qwen3-VL and InternVL by the language-model route (``llm``: decoder hidden states
at the image-token positions) and by the vision-tower route (``tower``: tower block outputs), SigLIP and CLIP
(tower block outputs) — it loads the model exactly as an extraction job does (``resolve_model`` ->
``ModelConfig.build`` -> ``extractor.load()``; by default the tiny random-init models written with
``build_tiny_model`` into a temporary directory, or a local checkpoint with ``--checkpoint FAMILY=PATH``) and
times, on one clip of ``--frames`` random uint8 frames fed as ``--frames`` images (option ``frames`` = every
clip frame):

1. ``extractor.extract(frames, (last,), None)`` — the deepest layer, so every layer runs (llm: ``hidden_states[n]``,
   the final norm's output; tower: the last block) — preprocessing, hooked forward and copy to numpy included;
2. ``extractor.extract(frames, (mid,), None)`` — a middle layer: the forward stops after it (early stop);
3. the **bare forward** of the same loaded module on exactly the inputs ``extract`` gave it (captured once by a
   forward pre-hook during the warm-up, so built outside the timing): ``model(**inputs, logits_to_keep=1)`` for
   the llm route (input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids, use_cache=False as
   the extractor passes them), ``tower(pixel_values, grid_thw=...)`` (Qwen) or ``tower(pixel_values=...)``.

Inside ``extract`` the time before the module's forward starts is reported as **preprocessing** (frame selection,
resize, rescale/normalise, patchify, tokenisation, copy to the device), the forward itself (and, llm route, its
vision part: ``get_image_features``) and the rest (reshape, index the visual tokens, ``.float().cpu().numpy()``),
by ``perf_counter`` wrappers set on the module's instance for the call. Figures are medians (and minima) over
``--repeats`` interleaved repeats after one warm-up call of each; frames/s = frames / median seconds.

Run: ``.venv/bin/python bench/vlm_extraction.py`` (30-40 s on 2 cores); ``--quick`` for a smoke run.
This is a benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from extractors.imaging import normalise_uint8  # noqa: E402
from extractors.registry import resolve_model  # noqa: E402
from extractors.tiny_models import build_tiny_model  # noqa: E402
from benchlib import cores, med, parse_resolution, print_table, sync, timed  # noqa: E402

# route name -> (family, route option; None for the tower-only families)
ROUTES: dict[str, tuple[str, str | None]] = {
    "qwen2.5-vl:llm": ("qwen2.5-vl", "llm"), "qwen2.5-vl:tower": ("qwen2.5-vl", "tower"),
    "qwen3-vl:llm": ("qwen3-vl", "llm"), "qwen3-vl:tower": ("qwen3-vl", "tower"),
    "internvl:llm": ("internvl", "llm"), "internvl:tower": ("internvl", "tower"),
    "siglip": ("siglip", None), "clip": ("clip", None),
}
TINY = {"qwen2.5-vl": "tiny-qwen2.5-vl", "qwen3-vl": "tiny-qwen3-vl", "internvl": "tiny-internvl",
        "siglip": "tiny-siglip", "clip": "tiny-clip"}
QUICK = {"frames": 5, "resolution": (64, 64), "repeats": 2}


# --------------------------------------------------------------------------------------------------------
# Timing


@contextlib.contextmanager
def timed_method(owner: Any, attribute: str, times: dict[str, float], key: str) -> Iterator[None]:
    """Shadow ``owner.attribute`` by a perf_counter wrapper (an instance attribute) while active.

    ``times[key + '_start']`` is the first call's start; ``times[key]`` sums the calls' durations (the wrapper's
    ``finally`` also sees a call that ends with the extractor's StopForward)."""
    original = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sync()
        start = time.perf_counter()
        times.setdefault(key + "_start", start)
        try:
            return original(*args, **kwargs)
        finally:
            sync()
            times[key] = times.get(key, 0.0) + time.perf_counter() - start

    own = vars(owner).get(attribute)  # an instance attribute already there (e.g. accelerate's hooks) comes back
    setattr(owner, attribute, wrapper)
    try:
        yield
    finally:
        if own is None:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, own)


@contextlib.contextmanager
def captured_call(module: Any) -> Iterator[dict[str, Any]]:
    """The positional and keyword arguments of the first call of ``module`` while active (a forward pre-hook)."""
    call: dict[str, Any] = {}

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        call.setdefault("args", args)
        call.setdefault("kwargs", dict(kwargs))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield call
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------------------
# One route


@dataclass
class RouteBench:
    """A loaded route, its bare-forward inputs and its timed samples."""

    name: str
    extractor: Any
    module: Any  # what extract() runs and the bare forward calls: the whole VLM (llm) or the tower
    last: int
    mid: int
    load_s: float
    source: str
    call: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    parity: str = "-"

    @property
    def llm(self) -> bool:
        return self.name.endswith(":llm")

    def work(self, layer: int) -> str:
        """What runs up to ``layer``: decoder layers (llm; hidden_states[L] needs L of n) or tower blocks."""
        if self.llm:
            return f"{layer}/{self.last} dec"
        return f"{layer + 1}/{self.last + 1} blk"


def load_route(name: str, checkpoint: str, source: str, args: argparse.Namespace) -> RouteBench:
    """Resolve, build and load one route as an extraction job does; mid = the middle selectable layer."""
    family, route = ROUTES[name]
    options: dict[str, Any] = {"frames": list(range(args.frames)), "device": args.device,
                               "random_init": source.startswith("tiny")}
    if route is not None:
        options["route"] = route
    model = resolve_model("bench", {"family": family, "checkpoint": checkpoint, "layers": "all", "options": options})
    extractor = model.build(0)
    load_s, _ = timed(extractor.load)
    last = model.layers[-1]
    module = extractor.model if route == "llm" else extractor.tower
    return RouteBench(name, extractor, module, last, last // 2, load_s, source)


def extract_sample(bench: RouteBench, frames: np.ndarray, layer: int) -> dict[str, float]:
    """One timed ``extract`` call, split into preprocessing, forward (its vision part) and the rest."""
    times: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(timed_method(bench.module, "forward", times, "forward"))
        if bench.llm:
            stack.enter_context(timed_method(bench.module.model, "get_image_features", times, "image"))
        sync()
        start = time.perf_counter()
        bench.extractor.extract(frames, (layer,), None, clip=0)
        sync()
        total = time.perf_counter() - start
    prep = times["forward_start"] - start
    return {"total": total, "prep": prep, "forward": times["forward"], "image": times.get("image", float("nan")),
            "rest": total - prep - times["forward"]}


def bare_forward(bench: RouteBench) -> Any:
    """The module's own forward on the captured inputs, without hooks (llm: logits of the last position only)."""
    extra = {"logits_to_keep": 1} if bench.llm else {}
    with torch.inference_mode():
        return bench.module(*bench.call["args"], **bench.call["kwargs"], **extra)


def bare_sample(bench: RouteBench) -> dict[str, float]:
    seconds, _ = timed(lambda: bare_forward(bench))
    return {"total": seconds}


def llm_parity(bench: RouteBench, frames: np.ndarray) -> str:
    """max |extract - hidden_states[L]| at the image tokens of an ``output_hidden_states`` forward (L = mid, last)."""
    kwargs = bench.call["kwargs"]
    with torch.inference_mode():
        hidden = bench.module(**kwargs, output_hidden_states=True, logits_to_keep=1).hidden_states
    visual = kwargs["input_ids"][0] == bench.extractor.route.image_token_id
    diffs = []
    for layer in (bench.mid, bench.last):
        ours = bench.extractor.extract(frames, (layer,), None).layers[layer]
        theirs = hidden[layer][0, visual].float().cpu().numpy()
        diffs.append(float(np.abs(ours.reshape(theirs.shape) - theirs).max()))
    return " / ".join(f"{d:.1e}" for d in diffs)


def run_route(bench: RouteBench, frames: np.ndarray, repeats: int) -> RouteBench:
    """Warm-up (capturing the bare inputs), then ``repeats`` interleaved samples of each call."""
    with captured_call(bench.module) as call:
        warm = {"last": extract_sample(bench, frames, bench.last)}
    bench.call = call
    warm["mid"] = extract_sample(bench, frames, bench.mid)
    warm["bare"] = bare_sample(bench)
    bench.samples = {key: [] for key in warm}
    bench.samples["warm-up"] = [warm[key] for key in ("last", "mid", "bare")]
    for _ in range(repeats):
        bench.samples["last"].append(extract_sample(bench, frames, bench.last))
        bench.samples["mid"].append(extract_sample(bench, frames, bench.mid))
        bench.samples["bare"].append(bare_sample(bench))
    if bench.llm:
        bench.parity = llm_parity(bench, frames)
    return bench


# --------------------------------------------------------------------------------------------------------
# Report


def col(bench: RouteBench, variant: str, key: str) -> list[float]:
    return [sample[key] for sample in bench.samples[variant]]


def describe(bench: RouteBench, frames: np.ndarray) -> str:
    """One line: source, load time, device, input grid, feature shape of the last layer."""
    ex = bench.extractor
    params = sum(p.numel() for p in bench.module.parameters())
    shape = ex.extract(frames, (bench.last,), None).layers[bench.last].shape
    layers = (f"hidden_states[0..{bench.last}] ({bench.last} decoder layers)" if bench.llm
              else f"blocks 0..{bench.last}")
    return (f"{bench.name:16s} {bench.source}: {type(bench.module).__name__} {params / 1e6:.2f}M params, loaded in "
            f"{bench.load_s:.1f} s, {ex.device} {str(ex.dtype).replace('torch.', '')}; {layers}; input grid "
            f"{ex.input_grid}; features {shape}")


def ms(values: list[float]) -> str:
    return f"{med(values) * 1e3:.1f}"


def timing_rows(bench: RouteBench, n_frames: int) -> list[list[str]]:
    """Rows of the PER CALL table: extract at the last and the middle layer, then the bare forward."""
    rows = []
    for variant in ("last", "mid", "bare"):
        totals = col(bench, variant, "total")
        if variant == "bare":
            label, work = "bare forward", "all dec + head" if bench.llm else "all blk + out"
            split = ["-", ms(totals), "-", "-", "-"]
        else:
            layer = bench.last if variant == "last" else bench.mid
            label, work = f"extract(({layer},))", bench.work(layer)
            forward, vision = col(bench, variant, "forward"), col(bench, variant, "image")
            parts = [ms(vision), f"{(med(forward) - med(vision)) * 1e3:.1f}"] if bench.llm else ["-", "-"]
            split = [ms(col(bench, variant, "prep")), ms(forward), *parts, ms(col(bench, variant, "rest"))]
        rows.append([bench.name if variant == "last" else "", label, work, ms(totals), f"{min(totals) * 1e3:.1f}",
                     f"{n_frames / med(totals):.1f}", *split])
    return rows


def summary_row(bench: RouteBench, n_frames: int) -> list[str]:
    last, mid, bare = (col(bench, v, "total") for v in ("last", "mid", "bare"))
    forward = col(bench, "last", "forward")
    prep = med(col(bench, "last", "prep"))
    return [bench.name, f"{n_frames / med(last):.1f}", f"{n_frames / med(bare):.1f}",
            f"{med(last) / med(bare):.2f} ({min(last) / min(bare):.2f})", f"{med(forward) / med(bare):.2f}",
            f"{prep * 1e3:.1f}", f"{prep / med(last):.0%}", f"{n_frames / prep:.0f}",
            f"{med(mid) / med(last):.2f}", bench.work(bench.mid), bench.parity]


def report(benches: list[RouteBench], frames: np.ndarray, repeats: int) -> None:
    n_frames = len(frames)
    print(f"PER CALL  one clip of {n_frames} frames; ms per call, median (min) over {repeats} repeat(s) after one "
          f"warm-up; work = decoder layers (dec) or tower blocks (blk) run; prep/forward/vision/rest split "
          f"extract's median")
    rows = [row for bench in benches for row in timing_rows(bench, n_frames)]
    print_table(["route", "call", "work", "median ms", "min ms", "frames/s", "prep ms", "forward ms", "vision ms",
                 "decoder ms", "rest ms"], rows, "lllrrrrrrrr")
    print()
    print("OVERHEAD  extract at the last layer vs the bare forward (ratios of medians; minima in brackets)")
    print_table(["route", "extract f/s", "bare f/s", "extract/bare", "fwd/bare", "prep ms", "prep share",
                 "prep f/s", "mid/last", "mid work", "parity mid / last"],
                [summary_row(bench, n_frames) for bench in benches], "lrrrrrrrrll")
    warm = ", ".join(b.name + " " + " / ".join(f"{s['total'] * 1e3:.0f}" for s in b.samples["warm-up"])
                     for b in benches)
    print(f"warm-up ms (last / mid / bare, not in the figures): {warm}")


def normalisation_report(frames: np.ndarray, repeats: int) -> None:
    """The preprocessors' lookup-table normalisation against the per-pixel arithmetic it replaced."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def arithmetic() -> np.ndarray:
        scaled = (frames.astype(np.float64) * (1 / 255)).astype(np.float32)
        values = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))

    def lookup() -> np.ndarray:
        return normalise_uint8(frames, mean, std, channels_first=True)

    times = {name: med([timed(fn)[0] for _ in range(repeats)]) for name, fn in
             (("arithmetic", arithmetic), ("lookup", lookup))}
    equal = np.array_equal(arithmetic(), lookup())
    print(f"NORMALISE  {len(frames)} frames of {frames.shape[1]}x{frames.shape[2]}: per-pixel arithmetic "
          f"{times['arithmetic'] * 1e3:.1f} ms, lookup table (extractors.imaging) {times['lookup'] * 1e3:.1f} ms, "
          f"ratio {times['arithmetic'] / times['lookup']:.2f}, bit-identical: {equal}")


# --------------------------------------------------------------------------------------------------------


def parse_checkpoint(text: str) -> tuple[str, str]:
    family, sep, path = text.partition("=")
    if not sep or family not in TINY or not path:
        raise argparse.ArgumentTypeError(f"--checkpoint {text!r}: expected FAMILY=PATH with FAMILY one of "
                                         f"{sorted(TINY)}")
    return family, path


def print_environment() -> None:
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"VLM extraction benchmark  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, {cores()} CPU "
          f"cores (torch threads {torch.get_num_threads()}), Python {platform.python_version()}, torch "
          f"{torch.__version__}, transformers {transformers.__version__}, CUDA device: {cuda}; {load_average()}")


def load_average() -> str:
    """The 1-minute load average: other work on the cores moves every figure (2 threads on a busy core stall)."""
    try:
        return f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load average unknown"


EXAMPLES = """examples:
  .venv/bin/python bench/vlm_extraction.py --quick                 # smoke run, ~10 s
  .venv/bin/python bench/vlm_extraction.py                         # 20 frames of 224x224, tiny models, ~30-40 s
  .venv/bin/python bench/vlm_extraction.py --routes qwen2.5-vl:llm,siglip --repeats 15 --threads 1
  .venv/bin/python bench/vlm_extraction.py --device cuda --checkpoint qwen2.5-vl=/models/Qwen2.5-VL-7B-Instruct \\
      --checkpoint siglip=/models/siglip-so400m-patch14-384 --frames 20 --resolution 480x832

columns: prep = inside extract, before the module's forward starts (resize, normalise, patchify, tokenise,
copy to the device); vision = get_image_features inside the llm forward; decoder = forward - vision; rest =
after the forward (reshape, visual-token selection, .float().cpu().numpy()). extract/bare > 1 is what the
extractor costs on top of the model; mid/last < 1 is what stopping after the middle layer saves."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help, the examples kept as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Throughput of VLM / vision-tower feature extraction (extractor.extract) against the bare "
                    "model forward on the same inputs, for the llm and tower routes of Qwen2.5-VL, Qwen3-VL and "
                    "InternVL, and for SigLIP and CLIP; with the early-stop gain of a middle layer. Default: the "
                    "tiny random-init models. Prints figures; asserts nothing.",
        formatter_class=HelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--frames", type=int, default=20, help="frames of the clip, each fed as one image")
    parser.add_argument("--resolution", type=parse_resolution, default="224x224",
                        help="HxW of the uint8 frames (the extractor resizes them to the model's input)")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats of every call (after one warm-up)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK['frames']} frames of 64x64, {QUICK['repeats']} repeats (overrides --frames, "
                             f"--resolution and --repeats)")
    parser.add_argument("--routes", default="all",
                        help=f"comma-separated subset of {', '.join(ROUTES)}; 'all' = every route, or with "
                             f"--checkpoint the routes of the families given")
    parser.add_argument("--checkpoint", type=parse_checkpoint, action="append", default=[], metavar="FAMILY=PATH",
                        help="bench a local checkpoint (repeatable); FAMILY one of " + ", ".join(TINY))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="the extractors' device option (auto: CUDA in bf16 when present, else CPU float32)")
    parser.add_argument("--threads", type=int, default=cores(), help="torch.set_num_threads (the machine's cores)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the tiny models are written")
    parser.add_argument("--keep", action="store_true", help="keep the tiny models' directory and print its path")
    return parser


def chosen_routes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    checkpoints = dict(args.checkpoint)
    if args.routes == "all":
        return [r for r, (family, _) in ROUTES.items() if not checkpoints or family in checkpoints]
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = [r for r in routes if r not in ROUTES]
    if unknown or not routes:
        parser.error(f"--routes: unknown {unknown}; known: {', '.join(ROUTES)}")
    return routes


def checkpoint_of(family: str, args: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    """(path, source label): the --checkpoint of the family, else its tiny model (built on first use)."""
    checkpoints = dict(args.checkpoint)
    if family in checkpoints:
        return checkpoints[family], f"checkpoint {checkpoints[family]}"
    path = tmp / TINY[family]
    build_s = 0.0
    if not path.exists():
        build_s, _ = timed(lambda: build_tiny_model(TINY[family], path, seed=0))
    return str(path), f"tiny {TINY[family]} (random init, built in {build_s:.1f} s)"


def release(bench: RouteBench) -> RouteBench:
    """Drop the model and its inputs (the figures stay), so that real checkpoints do not pile up in memory."""
    bench.extractor = bench.module = None
    bench.call = {}
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.resolution, args.repeats = QUICK["frames"], QUICK["resolution"], QUICK["repeats"]
    if args.frames < 1 or args.repeats < 1:
        parser.error("--frames and --repeats must be >= 1")
    routes = chosen_routes(args, parser)
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()  # the tower-only loads report the unused text weights
    transformers.utils.logging.disable_progress_bar()
    print_environment()
    height, width = args.resolution
    frames = np.random.default_rng(0).integers(0, 256, size=(args.frames, height, width, 3), dtype=np.uint8)
    print(f"Clip: {args.frames} random uint8 frames of {height}x{width}, every frame fed as one image; "
          f"{args.repeats} repeat(s); device option {args.device!r}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-vlm-", dir=args.tmpdir))
    benches = []
    try:
        for name in routes:
            path, source = checkpoint_of(ROUTES[name][0], args, tmp)
            bench = run_route(load_route(name, path, source, args), frames, args.repeats)
            print(describe(bench, frames))
            benches.append(release(bench))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    report(benches, frames, args.repeats)
    normalisation_report(frames, args.repeats)
    print(f"at the end: {load_average()}")
    if args.keep:
        print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
