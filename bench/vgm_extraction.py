#!/usr/bin/env python
"""What one VGM feature extraction costs: pipeline overhead, capture cost, early-stop saving, real-size speed.

On a random-init Wan2.1 T2V pipeline (the tiny demo model's VAE and text encoder, a larger transformer so
that matmuls, not Python, dominate), built with ``build_tiny_model`` into a temporary directory, resolved
with ``resolve_model`` and loaded through ``WanT2VExtractor`` exactly as an extraction job does, it times

1. **pipeline overhead**: ``extractor.extract(frames, (last,), t)`` per clip (resize, VAE encode, noise,
   hooked forward through every block, reshape to numpy) against the bare library calls on the same clip —
   ``vae.encode(video).latent_dist.mode()`` plus a full ``transformer(...)`` forward without hooks — with
   the share of each step inside ``extract``;
2. **capture cost**: ``layers=(last,)`` against all layers — the same blocks run, so the difference is what
   capturing, reshaping and copying the extra layers to numpy costs;
3. **early stop**: ``layers=(0,)`` against ``(last,)``, against the ideal (the transformer part / num_layers);
4. **real size** (CUDA only): a random-init Wan2.1-1.3B transformer (bf16) on the latent of an 81x480x832
   clip: seconds per forward and TFLOP/s from an analytic FLOP count (checked against
   ``torch.utils.flop_counter``), the forward stopped after layer 20 by the project's ``capture_blocks``, and
   the real-size VAE encode of that clip. Without CUDA it prints that it was skipped.

Steps inside ``extract`` are timed by ``perf_counter`` wrappers set on the extractor's instances for the
call (``extractor.video_tensor``, ``vae.encode``, ``transformer.forward``) and a pre-hook on block 0 —
microseconds against seconds. Every figure is the median (and the minimum) over ``--repeats`` x ``--clips``
samples, the variants interleaved clip by clip, after one warm-up call of each. On a CUDA machine sections
1-3 run where the extractor puts the model (CUDA, bf16), with a ``torch.cuda.synchronize`` around each timer.

Run: ``.venv/bin/python bench/vgm_extraction.py`` (about 1-2 minutes on 2 cores with the defaults).
This is a benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import diffusers  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from extractors.hooks import capture_blocks, first_output, run_until_deepest  # noqa: E402
from extractors.registry import resolve_model  # noqa: E402
from extractors.tiny_models import TINY_MODELS, build_tiny_model  # noqa: E402
from extractors.wan import WanT2V  # noqa: E402
from benchlib import cast_like_from_pretrained, cores, med, parse_resolution, print_table, quiet_diffusers, sync, timed  # noqa: E402,E501

BENCH_MODEL = "bench-wan-t2v"  # registered in TINY_MODELS for the run only

# Wan2.1-T2V-1.3B's transformer (Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json)
WAN_1_3B = {
    "patch_size": [1, 2, 2], "num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16,
    "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960, "num_layers": 30,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024,
}
REAL_LATENT = (1, 16, 21, 60, 104)  # 81 frames x 480 x 832 through the VAE (x4 time, causal; x8 space)
REAL_VIDEO = (1, 3, 81, 480, 832)
REAL_TEXT = (1, 512, 4096)  # max_text_tokens 512, UMT5-XXL width
PAPER_DEEPEST = 20  # the paper's deepest probing layer of the 30-block model (presets: layers 18, 20)


# --------------------------------------------------------------------------------------------------------
# The bench model


def bench_model_spec(layers: int, heads: int, head_dim: int, ffn: int) -> dict[str, Any]:
    """The tiny Wan pipeline with a larger transformer (same VAE, text encoder, scheduler)."""
    base = TINY_MODELS["tiny-wan-t2v"]
    class_name, config = base["transformer"]
    return {**base, "transformer": (class_name, {**config, "num_layers": layers, "num_attention_heads": heads,
                                                 "attention_head_dim": head_dim, "ffn_dim": ffn,
                                                 "rope_max_seq_len": 1024})}


@contextlib.contextmanager
def registered(name: str, spec: dict[str, Any]) -> Iterator[None]:
    TINY_MODELS[name] = spec
    try:
        yield
    finally:
        TINY_MODELS.pop(name, None)


# --------------------------------------------------------------------------------------------------------
# Timing inside extract


class StepTimer:
    """perf_counter wrappers on the extractor's instances while active; sums seconds per step."""

    def __init__(self, extractor: Any) -> None:
        self.extractor = extractor
        self.times: dict[str, float] = defaultdict(float)
        self._forward_start = 0.0

    def _wrap(self, owner: Any, attribute: str, key: str, *, mark_start: bool = False) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            start = time.perf_counter()
            if mark_start:
                self._forward_start = start
            try:
                return original(*args, **kwargs)
            finally:  # StopForward passes through here too
                sync()
                self.times[key] += time.perf_counter() - start

        setattr(owner, attribute, timed)  # an instance attribute shadows the class's method

    @contextlib.contextmanager
    def active(self) -> Iterator[dict[str, float]]:
        self.times = defaultdict(float)
        ex = self.extractor
        self._wrap(ex, "video_tensor", "video")
        self._wrap(ex.vae, "encode", "vae")
        self._wrap(ex.transformer, "forward", "transformer", mark_start=True)

        def before_block0(_module: Any, _inputs: Any) -> None:
            sync()
            self.times["embed"] += time.perf_counter() - self._forward_start

        handle = ex.transformer.blocks[0].register_forward_pre_hook(before_block0)
        try:
            yield self.times
        finally:
            handle.remove()
            for owner, attribute in ((ex, "video_tensor"), (ex.vae, "encode"), (ex.transformer, "forward")):
                delattr(owner, attribute)


@contextlib.contextmanager
def count_blocks(blocks: Any) -> Iterator[list[int]]:
    """How many blocks run (forward pre-hooks); used in the warm-up only."""
    count = [0]
    handles = [block.register_forward_pre_hook(lambda *_: count.__setitem__(0, count[0] + 1)) for block in blocks]
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------------------------------------
# Report helpers


def stats_row(label: str, values: list[float], digits: int = 3) -> list[str]:
    return [label, f"{med(values):.{digits}f}", f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"]


def print_environment(title: str) -> None:
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"{title}  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, {cores()} CPU cores "
          f"(torch threads {torch.get_num_threads()}), Python {platform.python_version()}, torch {torch.__version__}, "
          f"diffusers {diffusers.__version__}, transformers {transformers.__version__}, CUDA device: {cuda}")


# --------------------------------------------------------------------------------------------------------
# Sections 1-3: the extraction pipeline on CPU (or whatever device the extractor picks)


def pipeline_bench(args: argparse.Namespace, tmp: Path) -> None:
    spec = bench_model_spec(args.layers_of_model, args.heads, args.head_dim, args.ffn)
    height, width = args.resolution
    with registered(BENCH_MODEL, spec):
        build_s, path = timed(lambda: build_tiny_model(BENCH_MODEL, tmp / BENCH_MODEL, seed=0))
        entry = {"family": "wan-t2v", "checkpoint": str(path), "layers": "all", "timesteps": [args.timestep],
                 "options": {"frames": args.frames, "resolution": [height, width], "random_init": True,
                             "max_text_tokens": args.text_tokens}}
        model = resolve_model("bench-wan", entry, seed=0)
        extractor = model.build(0)
        load_s, _ = timed(extractor.load)
    transformer, vae = extractor.transformer, extractor.vae
    num_layers = len(transformer.blocks)
    last = num_layers - 1
    config = transformer.config
    width_c = config.num_attention_heads * config.attention_head_dim
    params = sum(p.numel() for p in transformer.parameters())
    vae_params = sum(p.numel() for p in vae.parameters())

    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, size=(args.frames, height, width, 3), dtype=np.uint8) for _ in range(args.clips)]

    # Inputs of the bare calls, prepared outside the timing with the extractor's own recipe.
    bare_inputs = []
    with torch.inference_mode():
        for clip, frames in enumerate(clips):
            video = extractor.video_tensor(frames, clip)
            latents = WanT2V.encode_video(extractor, video)
            noise = torch.randn(latents.shape, generator=extractor.generator(clip, args.timestep))
            sigma = args.timestep / int(extractor.scheduler.config.num_train_timesteps)
            noisy = ((1 - sigma) * latents.float() + sigma * noise.to(latents)).to(extractor.dtype)
            bare_inputs.append((video, noisy))
    latent_shape = tuple(bare_inputs[0][1].shape)
    grid = WanT2V.latent_grid(latent_shape, config)
    tokens = grid[0] * grid[1] * grid[2]
    timestep = torch.tensor([float(args.timestep)], device=extractor.device)

    def bare_vae(clip: int) -> Any:
        with torch.inference_mode():
            return vae.encode(bare_inputs[clip][0]).latent_dist.mode()

    def bare_forward(clip: int) -> Any:
        with torch.inference_mode():
            return transformer(hidden_states=bare_inputs[clip][1], timestep=timestep,
                               encoder_hidden_states=extractor.text, return_dict=False)

    step_timer = StepTimer(extractor)
    variants = {"last": (last,), "all": tuple(range(num_layers)), "first": (0,)}

    def run_extract(layers: tuple[int, ...], clip: int) -> dict[str, float]:
        with step_timer.active() as steps:
            total, features = timed(lambda: extractor.extract(clips[clip], layers, args.timestep, clip=clip))
        sample = dict(steps)
        sample["total"] = total
        sample["rest"] = total - sample["video"] - sample["vae"] - sample["transformer"]
        sample["blocks"] = sample["transformer"] - sample["embed"]
        sample["bytes"] = sum(a.nbytes for a in features.layers.values())
        sample["shape"] = next(iter(features.layers.values())).shape
        return sample

    print(f"Model: random-init Wan2.1 T2V pipeline '{BENCH_MODEL}' (tiny demo VAE z_dim 4 "
          f"[{vae_params / 1e3:.0f}k params] "
          f"and text encoder; transformer {num_layers} blocks x {config.num_attention_heads} heads x "
          f"{config.attention_head_dim} = {width_c} channels, ffn {config.ffn_dim}, {params / 1e6:.1f}M params), "
          f"built in {build_s:.1f} s, loaded by WanT2VExtractor in {load_s:.1f} s; device {extractor.device}, "
          f"{str(extractor.dtype).replace('torch.', '')}")
    print(f"Clips: {args.clips} random uint8 clips of {args.frames} frames x {height}x{width}; latent {latent_shape} "
          f"-> {grid[0]}x{grid[1]}x{grid[2]} = {tokens} tokens; {extractor.text.shape[1]} text tokens; "
          f"timestep {args.timestep}; {args.repeats} repeat(s) -> {args.repeats * args.clips} samples per figure")

    # Warm-up: one call of each variant (first-call costs shown, not used), counting the blocks that run.
    warm = {}
    blocks_run = {}
    for name, layers in variants.items():
        with count_blocks(transformer.blocks) as count:
            warm[name] = run_extract(layers, 0)["total"]
        blocks_run[name] = count[0]
    warm["bare_vae"], _ = timed(lambda: bare_vae(0))
    with count_blocks(transformer.blocks) as count:
        warm["bare_forward"], _ = timed(lambda: bare_forward(0))
    blocks_run["bare"] = count[0]
    print(f"Warm-up (first call of each, not in the figures): extract last {warm['last']:.2f} s, all "
          f"{warm['all']:.2f} s, layer 0 {warm['first']:.2f} s; bare VAE {warm['bare_vae']:.2f} s, bare forward "
          f"{warm['bare_forward']:.2f} s")
    print(f"Blocks run: layers=({last},) {blocks_run['last']}, all {blocks_run['all']}, (0,) {blocks_run['first']}, "
          f"bare forward {blocks_run['bare']} of {num_layers}")
    print()

    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    bare: dict[str, list[float]] = {"vae": [], "forward": [], "total": []}
    for _ in range(args.repeats):
        for clip in range(args.clips):
            for name, layers in variants.items():
                samples[name].append(run_extract(layers, clip))
            vae_s, _ = timed(lambda c=clip: bare_vae(c))
            forward_s, _ = timed(lambda c=clip: bare_forward(c))
            bare["vae"].append(vae_s)
            bare["forward"].append(forward_s)
            bare["total"].append(vae_s + forward_s)

    def col(name: str, key: str) -> list[float]:
        return [s[key] for s in samples[name]]

    if args.show_samples:
        print("Samples (s, in measurement order):")
        for name in variants:
            print(f"  extract {name:5s} total {' '.join(f'{x:.2f}' for x in col(name, 'total'))}   VAE "
                  f"{' '.join(f'{x:.2f}' for x in col(name, 'vae'))}   transformer "
                  f"{' '.join(f'{x:.3f}' for x in col(name, 'transformer'))}")
        print(f"  bare VAE {' '.join(f'{x:.2f}' for x in bare['vae'])}   bare forward "
              f"{' '.join(f'{x:.3f}' for x in bare['forward'])}")
        print()

    # 1. pipeline overhead
    last_total = med(col("last", "total"))
    print(f"1. PIPELINE OVERHEAD  extract(layers=({last},)) — all {num_layers} blocks run — vs the bare calls, "
          f"seconds per clip")
    rows = [
        stats_row(f"extract(frames, ({last},), {args.timestep})", col("last", "total")),
        stats_row("  video_tensor (uint8 -> float, resize, [-1, 1])", col("last", "video")),
        stats_row("  VAE encode (vae.encode)", col("last", "vae")),
        stats_row(f"  transformer forward, stopped after block {last}", col("last", "transformer")),
        stats_row("    before block 0 (rope, patch embed, time/text embed)", col("last", "embed")),
        stats_row(f"    blocks 0..{last} (+ capture hook)", col("last", "blocks")),
        stats_row("  rest (noise, latent norm, reshape, .cpu().numpy())", col("last", "rest")),
        stats_row("bare vae.encode(video).latent_dist.mode()", bare["vae"]),
        stats_row("bare transformer(...) full forward, no hooks", bare["forward"]),
        stats_row("bare VAE + forward", bare["total"]),
    ]
    print_table(["step", "median s", "min s", "max s"], rows, "lrrr")
    def both(fn: Callable[[Callable[[list[float]], float]], float], fmt: str) -> str:
        return f"medians {fn(med):{fmt}}, minima {fn(min):{fmt}}"

    print("ratio extract / bare VAE + forward       "
          + both(lambda st: st(col("last", "total")) / st(bare["total"]), ".3f")
          + "   (difference " + both(lambda st: st(col("last", "total")) - st(bare["total"]), "+.3f") + " s)")
    print("ratio extract without its VAE / bare forward  "
          + both(lambda st: st([s["total"] - s["vae"] for s in samples["last"]]) / st(bare["forward"]), ".3f")
          + "   (the bare forward also runs norm_out + proj_out + unpatchify)")
    print(f"extract's VAE share                      {med(col('last', 'vae')) / last_total:.1%}   "
          f"(video_tensor {med(col('last', 'video')) / last_total:.1%}, transformer "
          f"{med(col('last', 'transformer')) / last_total:.1%}, rest {med(col('last', 'rest')) / last_total:.1%}; "
          f"of the median total)")
    print()

    # 2. capture cost
    for name in variants:
        for sample in samples[name]:
            sample["no_vae"] = sample["total"] - sample["vae"]
    one, every = samples["last"], samples["all"]
    mb_one, mb_all = one[0]["bytes"] / 1e6, every[0]["bytes"] / 1e6
    keys = ("total", "no_vae", "transformer", "rest")

    def cell(name: str, key: str) -> str:
        return f"{med(col(name, key)):.3f} ({min(col(name, key)):.3f})"

    def diff(key: str, st: Callable[[list[float]], float]) -> float:
        return st(col("all", key)) - st(col("last", key))

    print(f"2. CAPTURE COST  1 layer vs all {num_layers} layers; both run all {num_layers} blocks; per clip; "
          f"median (min) over samples")
    rows = [[label, f"{len(variants[name])}", f"{samples[name][0]['bytes'] / 1e6:.2f}",
             *[cell(name, key) for key in keys]]
            for label, name in ((f"({last},)", "last"), (f"all ({num_layers})", "all"))]
    rows.append(["difference", f"+{num_layers - 1}", f"+{mb_all - mb_one:.2f}",
                 *[f"{diff(key, med):+.3f} ({diff(key, min):+.3f})" for key in keys]])
    print_table(["layers", "captured", "features MB", "whole clip s", "without VAE s", "transformer s", "rest s"],
                rows, "lrrrrrr")
    print(f"per extra captured layer ({(mb_all - mb_one) / (num_layers - 1):.2f} MB, float32 {one[0]['shape']}): "
          f"reshape + copy to numpy (rest) {diff('rest', med) / (num_layers - 1) * 1e3:+.2f} ms; "
          f"whole clip without VAE {diff('no_vae', med) / (num_layers - 1) * 1e3:+.1f} ms (medians), "
          f"{diff('no_vae', min) / (num_layers - 1) * 1e3:+.1f} ms (minima)")
    print(f"all layers vs one, without VAE: medians {med(col('all', 'no_vae')) / med(col('last', 'no_vae')):.3f}x, "
          f"minima {min(col('all', 'no_vae')) / min(col('last', 'no_vae')):.3f}x the time")
    print()

    # 3. early stop
    print(f"3. EARLY STOP  layers=(0,) runs {blocks_run['first']} of {num_layers} blocks; per clip; "
          f"median (min) over samples")
    stats: dict[str, dict[str, float]] = {}
    for label, st in (("median", med), ("min", min)):
        total_l, total_f = st(col("last", "total")), st(col("first", "total"))
        tr_l, tr_f, embed = st(col("last", "transformer")), st(col("first", "transformer")), st(col("last", "embed"))
        stats[label] = {
            "total_f": total_f, "total_l": total_l, "tr_f": tr_f, "tr_l": tr_l,
            "ratio": total_f / total_l, "tr_ratio": tr_f / tr_l,
            "ideal": (total_l - tr_l + tr_l / num_layers) / total_l, "tr_ideal": 1 / num_layers,
            "ideal_embed": (total_l - tr_l + embed + (tr_l - embed) / num_layers) / total_l,
            "tr_ideal_embed": (embed + (tr_l - embed) / num_layers) / tr_l,
        }
    med_s, min_s = stats["median"], stats["min"]

    def pair(key: str) -> str:
        return f"{med_s[key]:.3f} ({min_s[key]:.3f})"

    rows = [
        ["(0,)", f"{blocks_run['first']}", pair("total_f"), pair("tr_f")],
        [f"({last},)", f"{blocks_run['last']}", pair("total_l"), pair("tr_l")],
        ["ratio (0,) / last", "", pair("ratio"), pair("tr_ratio")],
        [f"ideal ratio: transformer part / {num_layers}", "", pair("ideal"), pair("tr_ideal")],
        ["ideal, work before block 0 kept whole", "", pair("ideal_embed"), pair("tr_ideal_embed")],
    ]
    print_table(["layers", "blocks run", "whole clip s", "transformer s"], rows, "lrrr")
    print(f"saving per clip: {med_s['total_l'] - med_s['total_f']:.3f} s of {med_s['total_l']:.3f} s "
          f"({1 - med_s['ratio']:.1%}; minima {1 - min_s['ratio']:.1%}); the VAE and the rest do not shrink with depth")
    print()


# --------------------------------------------------------------------------------------------------------
# Section 4: real-size timing on CUDA (or, with --gpu-smoke, the same code on a few layers and a tiny latent)


def transformer_flops(config: dict[str, Any], latent: tuple[int, ...], text_tokens: int,
                      blocks: int | None = None, head: bool = True) -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) of one WanTransformer3DModel forward, batch 1.

    N video tokens, D = heads x head_dim, F = ffn_dim, M text tokens, L blocks:
      per block: self-attention 8ND^2 (q, k, v, o) + 4N^2 D (QK^T, AV); cross-attention 4ND^2 (q, o)
      + 4MD^2 (k, v of the text) + 4NMD; MLP 4NDF;
      outside:   patch embed 2N(C p)D, text embed 2M(text_dim D + D^2), time embed 2(freq D + D^2 + 6D^2),
      and with ``head`` proj_out 2ND(C p). Norms, RoPE, softmax, GELU are not counted.
    """
    p_t, p_h, p_w = config["patch_size"]
    _, channels, frames, height, width = latent
    n = (frames // p_t) * (height // p_h) * (width // p_w)
    d = config["num_attention_heads"] * config["attention_head_dim"]
    f, m, patch = config["ffn_dim"], text_tokens, channels * p_t * p_h * p_w
    blocks = config["num_layers"] if blocks is None else blocks
    linear = 8 * n * d * d + 4 * n * d * d + 4 * m * d * d + 4 * n * d * f
    attention = 4 * n * n * d + 4 * n * m * d
    outside = (2 * n * patch * d + 2 * m * (config["text_dim"] * d + d * d)
               + 2 * (config["freq_dim"] * d + d * d + 6 * d * d) + (2 * n * d * patch if head else 0))
    return {"tokens": n, "linear": blocks * linear, "attention": blocks * attention, "outside": outside,
            "total": blocks * (linear + attention) + outside}


def real_size_bench(args: argparse.Namespace, smoke: bool) -> None:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    if not smoke and not torch.cuda.is_available():
        print("4. REAL SIZE  no GPU: real-size timing skipped")
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    if smoke:  # the same code on a few layers and a tiny latent, to check it runs (figures meaningless)
        config = {**WAN_1_3B, "num_layers": 4}
        latent, text_shape, video_shape, repeats = (1, 16, 2, 8, 8), (1, 16, 4096), (1, 3, 5, 32, 32), 1
    else:
        config, latent, text_shape, video_shape, repeats = WAN_1_3B, REAL_LATENT, REAL_TEXT, REAL_VIDEO, args.repeats
    layers = config["num_layers"]
    stop = PAPER_DEEPEST * layers // 30

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn: Callable[[], Any]) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    def peak_gib() -> str:
        return f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if device.type == "cuda" else "-"

    def reset_peak() -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    torch.manual_seed(0)
    init_s = time.perf_counter()
    with torch.device(device):
        model = WanTransformer3DModel(**config)
    model = cast_like_from_pretrained(model, dtype).eval()
    init_s = time.perf_counter() - init_s
    params = sum(p.numel() for p in model.parameters())
    hidden = torch.randn(latent, device=device, dtype=dtype)
    text = torch.randn(text_shape, device=device, dtype=dtype)
    timestep = torch.tensor([500.0], device=device)

    def full() -> Any:
        with torch.inference_mode():
            return model(hidden_states=hidden, timestep=timestep, encoder_hidden_states=text, return_dict=False)

    def until_stop() -> None:
        with torch.inference_mode(), capture_blocks(model.blocks, (stop,), first_output):
            run_until_deepest(full)

    flops = transformer_flops(config, latent, text_shape[1])
    flops_stop = transformer_flops(config, latent, text_shape[1], blocks=stop + 1, head=False)
    with FlopCounterMode(display=False) as counter:
        full()
    by_op = {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}
    counted_attention = sum(n for op, n in by_op.items() if "attention" in op)
    counted_matmul = sum(by_op.values()) - counted_attention

    full()  # warm-up
    reset_peak()
    full_s = [timed(full) for _ in range(repeats)]
    full_peak = peak_gib()
    until_stop()
    stop_s = [timed(until_stop) for _ in range(repeats)]
    model = None  # free it before the VAE
    if device.type == "cuda":
        torch.cuda.empty_cache()

    torch.manual_seed(0)
    with torch.device(device):
        vae = AutoencoderKLWan()  # the diffusers defaults are Wan2.1's VAE (base_dim 96, z_dim 16)
    with quiet_diffusers():
        vae = vae.to(dtype).eval()
    video = torch.rand(video_shape, device=device, dtype=dtype) * 2 - 1

    def encode() -> Any:
        with torch.inference_mode():
            return vae.encode(video).latent_dist.mode()

    z_shape = tuple(encode().shape)  # warm-up
    reset_peak()
    vae_s = [timed(encode) for _ in range(repeats)]
    vae_peak = peak_gib()
    vae = None

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    note = f"  [--gpu-smoke: same code, 4 layers, tiny latent, on {device}; figures meaningless]" if smoke else ""
    print(f"4. REAL SIZE{note}")
    print(f"Device {name}; random-init WanTransformer3DModel with the Wan2.1-1.3B config ({layers} blocks x "
          f"{config['num_attention_heads']} heads x {config['attention_head_dim']}, ffn {config['ffn_dim']}, "
          f"{params / 1e9:.2f}B params) in bf16 (float32 where from_pretrained keeps it), built in {init_s:.1f} s; "
          f"latent {latent} -> {flops['tokens']} tokens, text {text_shape}; {repeats} timed repeat(s) after one "
          f"warm-up")
    print("FLOPs = L [8ND^2 + 4N^2D + 4ND^2 + 4MD^2 + 4NMD + 4NDF] + 2N(Cp)D + 2M(text_dim D + D^2) + "
          "2(freq D + 7D^2) + 2ND(Cp)")
    print("  (N video tokens, M text tokens, D width, F ffn, L blocks, Cp = channels x patch; "
          "2 FLOPs per multiply-add; norms, RoPE, softmax, GELU not counted)")
    matmul_formula = flops["linear"] + flops["outside"]
    attention_check = (f"{counted_attention / 1e12:.4g} ({counted_attention / flops['attention']:.3f}x)"
                       if counted_attention else "not counted (no SDPA formula for this device's kernel)")
    print(f"  = {flops['total'] / 1e12:.4g} TFLOP per forward: linear layers {flops['linear'] / 1e12:.4g}, attention "
          f"scores/values {flops['attention'] / 1e12:.4g}, outside the blocks {flops['outside'] / 1e12:.4g}")
    print(f"  torch.utils.flop_counter: linear/conv {counted_matmul / 1e12:.4g} TFLOP "
          f"({counted_matmul / matmul_formula:.3f}x "
          f"the formula's linear + outside), attention {attention_check}")
    rows = [
        ["transformer full forward", f"{med(full_s):.3f}", f"{min(full_s):.3f}", f"{flops['total'] / 1e12:.4g}",
         f"{flops['total'] / med(full_s) / 1e12:.3g}", full_peak],
        [f"forward stopped after block {stop} (capture_blocks)", f"{med(stop_s):.3f}", f"{min(stop_s):.3f}",
         f"{flops_stop['total'] / 1e12:.4g}", f"{flops_stop['total'] / med(stop_s) / 1e12:.3g}", "-"],
        [f"VAE encode {video_shape} -> {z_shape}", f"{med(vae_s):.3f}", f"{min(vae_s):.3f}", "-", "-", vae_peak],
    ]
    print_table(["step", "median s", "min s", "TFLOP", "TFLOP/s", "peak GiB"], rows, "lrrrrr")
    print()


# --------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost of VGM feature extraction on a random-init Wan2.1 T2V: extract() vs bare VAE + forward, "
                    "capture cost of all layers, early-stop saving, and real-size GPU speed. Prints figures; "
                    "asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clips", type=int, default=2, help="distinct random clips")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip fed to the model (4k+1)")
    parser.add_argument("--resolution", type=parse_resolution, default="160x160",
                        help="model input HxW (multiple of 16)")
    parser.add_argument("--layers-of-model", type=int, default=12, help="transformer blocks of the bench model")
    parser.add_argument("--heads", type=int, default=8, help="attention heads of the bench model")
    parser.add_argument("--head-dim", type=int, default=64, help="attention head dim of the bench model")
    parser.add_argument("--ffn", type=int, default=2048, help="MLP width of the bench model")
    parser.add_argument("--text-tokens", type=int, default=64, help="max_text_tokens (padded empty prompt)")
    parser.add_argument("--timestep", type=int, default=500, help="value fed to the denoiser (sigma = t / 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of every measurement (x clips)")
    parser.add_argument("--threads", type=int, default=cores(), help="torch.set_num_threads (the machine's cores)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the temporary model is written")
    parser.add_argument("--keep", action="store_true", help="keep the temporary model directory and print its path")
    parser.add_argument("--show-samples", action="store_true", help="print every timed sample")
    parser.add_argument("--gpu-smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clips < 1 or args.repeats < 1 or args.layers_of_model < 2:
        parser.error("--clips and --repeats must be >= 1, --layers-of-model >= 2")

    torch.set_num_threads(args.threads)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    print_environment("VGM extraction benchmark")
    if args.gpu_smoke:
        real_size_bench(args, smoke=True)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-vgm-", dir=args.tmpdir))
    try:
        pipeline_bench(args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    real_size_bench(args, smoke=False)
    if args.keep:
        print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
