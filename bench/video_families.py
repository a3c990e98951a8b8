#!/usr/bin/env python
"""What a feature extraction costs in every video diffusion family: overhead, early stop, real-size speed.

1. **Tiny models** (every machine). Each family's tiny random-init pipeline is written with
   ``build_tiny_model``, resolved with ``resolve_model`` and loaded by its extractor, exactly as a job does.
   Per family it times, on the same clip:

   * ``extract(frames, (last,), t)``: the whole recipe (resize, VAE, noise, hooked forward, numpy);
   * the **bare** library calls on the same inputs: the family's VAE encoding plus one unhooked transformer
     call with the family's own arguments (``VideoFamily.encode_video`` and ``VideoFamily.forward``);
     **overhead** = extract / bare;
   * ``extract(frames, (0,), t)``: the **early-stop saving** 1 - first/last, against the ideal share of the
     forward that blocks 1..N-1 are (the bare forward's share of the bare total x (N-1)/N).

   Tiny models are dominated by Python and small kernels; the ratios say what the recipe adds around the
   library calls, not how a 14B model behaves.
2. **Real size** (CUDA only; ``--smoke`` runs it shrunk on the CPU to check the code path): each family's
   public transformer architecture, random-init in bfloat16, on the latent of its preset clip (frames and
   resolution of the preset): seconds per forward, and TFLOP/s from the FLOPs ``torch.utils.flop_counter``
   counts for that forward. Without CUDA and without ``--smoke`` it prints that it was skipped.

Figures are medians over ``--repeats`` after a warm-up. Run:
``.venv/bin/python bench/video_families.py`` (about 1 minute on 2 cores). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchlib import cast_like_from_pretrained, cores, med, print_table, timed  # noqa: E402
from extractors.registry import families, resolve_model  # noqa: E402
from extractors.tiny_models import build_tiny_model  # noqa: E402

# family -> (tiny model, options, timestep): small enough for seconds on a CPU, the shapes the tests use.
TINY_RUNS: dict[str, tuple[str, dict[str, Any], int]] = {
    "wan-t2v": ("tiny-wan-t2v", {"frames": 9, "resolution": [64, 64]}, 500),
    "wan2.2-t2v": ("tiny-wan2.2-t2v", {"frames": 9, "resolution": [64, 64]}, 500),
    "wan2.2-ti2v": ("tiny-wan2.2-ti2v", {"frames": 9, "resolution": [64, 96]}, 500),
    "cogvideox-t2v": ("tiny-cogvideox-rope", {"frames": 9, "resolution": [32, 48]}, 250),
    "aether": ("tiny-aether", {"frames": 25, "resolution": [64, 64], "parts_checkpoint": None}, 250),
    "hunyuan-video": ("tiny-hunyuan-video", {"frames": 9, "resolution": [64, 64]}, 500),
    "ltx-video": ("tiny-ltx-video", {"frames": 17, "resolution": [64, 96]}, 500),
    "mochi": ("tiny-mochi", {"frames": 13, "resolution": [32, 48]}, 500),
}


# --- 1. tiny models ---------------------------------------------------------------------------------------

def tiny_row(family: str, root: Path, repeats: int) -> list[str]:
    tiny, options, timestep = TINY_RUNS[family]
    checkpoint = build_tiny_model(tiny, root / tiny)
    model = resolve_model(family, {"family": family, "checkpoint": str(checkpoint), "timesteps": [timestep],
                                   "options": {**options, "random_init": True, "max_text_tokens": 8,
                                               "device": "cpu"}})
    extractor = model.build(seed=0)
    extractor.load()
    spec, last = extractor.family_spec, extractor.num_layers() - 1
    frames = np.random.default_rng(0).integers(0, 256, (options["frames"], *options["resolution"], 3),
                                               dtype=np.uint8)

    def bare() -> tuple[float, float]:
        with torch.inference_mode():
            video = extractor.video_tensor(frames, 0)
            vae_s, latents = timed(lambda: spec.encode_video(extractor, video))
            inputs = spec.clip_conditioning(extractor, video, frames, latents)
            level = spec.noise_level(extractor, timestep, latents)
            noisy = level.apply(latents, torch.randn_like(latents))
            transformer = extractor.denoiser(spec.denoiser(level, extractor.checkpoint.index))
            forward_s, _ = timed(lambda: spec.forward(extractor, transformer, noisy, level, inputs))
        return vae_s, forward_s

    runs: dict[str, list[float]] = {"last": [], "first": [], "vae": [], "forward": []}
    for repeat in range(repeats + 1):  # the first round warms up
        last_s, _ = timed(lambda: extractor.extract(frames, (last,), timestep))
        first_s, _ = timed(lambda: extractor.extract(frames, (0,), timestep))
        vae_s, forward_s = bare()
        if repeat:
            for key, value in zip(runs, (last_s, first_s, vae_s, forward_s)):
                runs[key].append(value)
    last_s, first_s, vae_s, forward_s = (med(runs[key]) for key in runs)
    blocks = last + 1
    ideal = forward_s / (vae_s + forward_s) * (blocks - 1) / blocks
    return [family, tiny, str(blocks), f"{1e3 * last_s:.1f}", f"{1e3 * (vae_s + forward_s):.1f}",
            f"{last_s / (vae_s + forward_s):.2f}x", f"{1e3 * first_s:.1f}", f"{1 - first_s / last_s:.0%}",
            f"{ideal:.0%}"]


def tiny_bench(args: argparse.Namespace) -> None:
    print("\n## Tiny random-init models: the recipe against the bare library calls (ms, medians)\n")
    root = Path(tempfile.mkdtemp(prefix="video-families-"))
    try:
        rows = [tiny_row(family, root, args.repeats) for family in args.families]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(["family", "tiny model", "blocks", "extract(last)", "bare VAE+forward", "overhead",
                 "extract(block 0)", "early-stop saving", "ideal"], rows, "llrrrrrrr")


# --- 2. real size -------------------------------------------------------------------------------------------

def _text(config: dict[str, Any], key: str, tokens: int, device: Any, dtype: Any) -> Any:
    return torch.randn(1, tokens, int(config[key]), device=device, dtype=dtype)


def wan_inputs(config, grid, device, dtype):
    frames, height, width = grid
    hidden = torch.randn(1, int(config["in_channels"]), frames, 2 * height, 2 * width, device=device, dtype=dtype)
    return {"hidden_states": hidden, "timestep": torch.tensor([500.0], device=device),
            "encoder_hidden_states": _text(config, "text_dim", 512, device, dtype), "return_dict": False}


def cogvideox_inputs(config, grid, device, dtype):
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    frames, height, width = grid
    hidden = torch.randn(1, frames, int(config["in_channels"]), 2 * height, 2 * width, device=device, dtype=dtype)
    shell = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None,
                              transformer=CogVideoXTransformer3DModel.from_config(config).to("meta"))
    rotary = shell._prepare_rotary_positional_embeddings(16 * height, 16 * width, frames, device)
    return {"hidden_states": hidden, "timestep": torch.tensor([250], device=device),
            "encoder_hidden_states": _text(config, "text_embed_dim", 226, device, dtype),
            "image_rotary_emb": rotary, "return_dict": False}


def hunyuan_inputs(config, grid, device, dtype):
    frames, height, width = grid
    hidden = torch.randn(1, int(config["in_channels"]), frames, 2 * height, 2 * width, device=device, dtype=dtype)
    return {"hidden_states": hidden, "timestep": torch.tensor([500.0], device=device),
            "encoder_hidden_states": _text(config, "text_embed_dim", 256, device, dtype),
            "encoder_attention_mask": torch.ones(1, 256, device=device, dtype=dtype),
            "pooled_projections": torch.randn(1, int(config["pooled_projection_dim"]), device=device, dtype=dtype),
            "guidance": torch.tensor([6000.0], device=device, dtype=dtype), "return_dict": False}


def ltx_inputs(config, grid, device, dtype):
    frames, height, width = grid
    hidden = torch.randn(1, frames * height * width, int(config["in_channels"]), device=device, dtype=dtype)
    return {"hidden_states": hidden, "timestep": torch.tensor([500.0], device=device),
            "encoder_hidden_states": _text(config, "caption_channels", 128, device, dtype),
            "encoder_attention_mask": torch.ones(1, 128, device=device, dtype=dtype), "num_frames": frames,
            "height": height, "width": width, "rope_interpolation_scale": (8 / 25, 32, 32), "return_dict": False}


def mochi_inputs(config, grid, device, dtype):
    frames, height, width = grid
    hidden = torch.randn(1, int(config["in_channels"]), frames, 2 * height, 2 * width, device=device, dtype=dtype)
    return {"hidden_states": hidden, "timestep": torch.tensor([500.0], device=device, dtype=dtype),
            "encoder_hidden_states": _text(config, "text_embed_dim", 256, device, dtype),
            "encoder_attention_mask": torch.ones(1, 256, device=device, dtype=torch.bool), "return_dict": False}


InputBuilder = Callable[[dict[str, Any], tuple[int, int, int], Any, Any], dict[str, Any]]
# name -> (transformer class, public config keys that differ from the class defaults, token grid (T', h, w)
# of the preset clip, inputs). Token grids: Wan 81x480x832 -> 21x30x52; Wan2.2-TI2V 121x704x1280 -> 31x22x40;
# CogVideoX 49x480x720 -> 13x30x45; HunyuanVideo 61x544x960 -> 16x34x60; LTX 121x480x704 -> 16x15x22 (patch
# 1); Mochi 85x480x848 -> 15x30x53.
REAL: dict[str, tuple[str, dict[str, Any], tuple[int, int, int], InputBuilder]] = {
    "Wan2.1-T2V-14B": ("WanTransformer3DModel", {
        "patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16,
        "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6}, (21, 30, 52), wan_inputs),
    "Wan2.2-TI2V-5B": ("WanTransformer3DModel", {
        "patch_size": [1, 2, 2], "num_attention_heads": 24, "attention_head_dim": 128, "in_channels": 48,
        "out_channels": 48, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 14336, "num_layers": 30,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6}, (31, 22, 40), wan_inputs),
    "CogVideoX-5b": ("CogVideoXTransformer3DModel", {
        "num_attention_heads": 48, "attention_head_dim": 64, "num_layers": 42, "in_channels": 16,
        "out_channels": 16, "text_embed_dim": 4096, "use_rotary_positional_embeddings": True},
        (13, 30, 45), cogvideox_inputs),
    "HunyuanVideo": ("HunyuanVideoTransformer3DModel", {
        "num_attention_heads": 24, "attention_head_dim": 128, "num_layers": 20, "num_single_layers": 40,
        "in_channels": 16, "out_channels": 16, "text_embed_dim": 4096, "pooled_projection_dim": 768,
        "guidance_embeds": True, "rope_axes_dim": [16, 56, 56]}, (16, 34, 60), hunyuan_inputs),
    "LTX-Video": ("LTXVideoTransformer3DModel", {
        "num_attention_heads": 32, "attention_head_dim": 64, "num_layers": 28, "in_channels": 128,
        "out_channels": 128, "cross_attention_dim": 2048, "caption_channels": 4096}, (16, 15, 22), ltx_inputs),
    "Mochi-1-preview": ("MochiTransformer3DModel", {
        "num_attention_heads": 24, "attention_head_dim": 128, "num_layers": 48, "in_channels": 12,
        "text_embed_dim": 4096, "pooled_projection_dim": 1536, "max_sequence_length": 256},
        (15, 30, 53), mochi_inputs),
}
SMOKE = {"num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2, "num_single_layers": 1,
         "ffn_dim": 64, "text_dim": 32, "text_embed_dim": 32, "caption_channels": 32, "cross_attention_dim": 32,
         "pooled_projection_dim": 16, "freq_dim": 32, "rope_axes_dim": [4, 6, 6]}


def real_row(name: str, smoke: bool, repeats: int) -> list[str]:
    import diffusers
    from torch.utils.flop_counter import FlopCounterMode

    class_name, config, grid, inputs_of = REAL[name]
    device, dtype = (torch.device("cpu"), torch.float32) if smoke else (torch.device("cuda"), torch.bfloat16)
    if smoke:
        config = {**config, **{k: v for k, v in SMOKE.items() if k in config}}
        grid = (2, 3, 4)
    cls = getattr(diffusers, class_name)
    with torch.device(device):
        model = cast_like_from_pretrained(cls.from_config(config), dtype).eval().requires_grad_(False)
    inputs = inputs_of(dict(model.config), grid, device, dtype)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:  # not inference_mode: the counter's module tracker needs autograd nodes
        model(**inputs)
    with torch.inference_mode():
        seconds = [timed(lambda: model(**inputs))[0] for _ in range(repeats)]
    params = sum(p.numel() for p in model.parameters())
    flops = counter.get_total_flops()
    tokens = grid[0] * grid[1] * grid[2]
    return [name, f"{params / 1e9:.2f}B", f"{grid[0]}x{grid[1]}x{grid[2]} = {tokens}", f"{med(seconds):.3f}",
            f"{flops / 1e12:.1f}", f"{flops / med(seconds) / 1e12:.1f}"]


def real_bench(args: argparse.Namespace) -> None:
    smoke = args.smoke
    if not torch.cuda.is_available() and not smoke:
        print("\n## Real size: skipped (no CUDA; --smoke runs it shrunk on the CPU)")
        return
    label = "SMOKE (shrunk configs, CPU float32: checks the code path, not speed)" if smoke else \
        f"{torch.cuda.get_device_name()} bfloat16"
    print(f"\n## Real-size transformers, one full forward on the preset clip's latent: {label}\n")
    rows = []
    for name in args.real:
        rows.append(real_row(name, smoke, args.repeats))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the previous architecture's weights are gone with real_row's frame
    print_table(["architecture", "params", "tokens (T'xhxw)", "s / forward", "TFLOP", "TFLOP/s"], rows, "lrrrrr")


def main(argv: list[str] | None = None) -> int:
    video = sorted(name for name, cls in families().items() if getattr(cls, "family_spec", None) is not None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=[f for f in TINY_RUNS if f in video],
                        choices=sorted(TINY_RUNS), help="families whose tiny models to time")
    parser.add_argument("--real", nargs="+", default=list(REAL), choices=list(REAL),
                        help="real-size architectures to time (CUDA, or --smoke)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="run the real-size section shrunk on the CPU")
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"# video_families.py: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{cores()} cores, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    if not args.skip_tiny:
        tiny_bench(args)
    real_bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
