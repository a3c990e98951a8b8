#!/usr/bin/env python
"""Planning a paper-scale DAG: how long ``snakemake -n`` takes for >= 10,000 jobs, and where the time goes.

The config is the paper's grid in shape (20 feature sources: VGMs with layer x timestep sweeps, VLMs, towers,
baselines; three tasks with two probe kinds; two fusions, one materialised) over a large synthetic dataset
(``--clips``, default 8,000 clips in shards of 16: one extraction job per model and shard). The models are the
tiny random-init ones under many names: planning reads only their configs, so the DAG has the paper's
shape without any checkpoint on disk. Nothing is executed.

It prints:

* the wall time of ``snakemake -n --quiet`` in an empty directory, the job count and the time per job;
* where the time goes, from one run under cProfile: Snakemake's own parsing and DAG building, the
  workflow's planning (``workflow.planning``: config checks, model resolution, the plan) and the rules'
  input/params/resources functions, each as seconds of cumulative time;
* the plan alone, built in this process (``WorkflowPlan(config)``), as a cross-check.

Run: ``.venv/bin/python bench/dag_scale.py`` (about two minutes on 2 cores). A benchmark, not a test: it
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TINY = "resources/models/"
VGM = {"options": {"frames": 17, "resolution": [64, 64], "random_init": True, "max_text_tokens": 8}}
VLM = {"options": {"random_init": True}}


def paper_grid(clips: int, clips_per_shard: int) -> dict:
    """The paper's grid in shape over ``clips`` synthetic clips."""
    models = {"pixels": {"family": "pixels", "layers": "all", "options": {"patch_size": 8}},
              "random-patch": {"family": "random-patch", "layers": [-1],
                               "options": {"patch_size": 8, "channels": 96, "depth": 3}}}
    for size in ("1.3b", "14b", "i2v-14b"):  # Wan2.1: 3 layers x 4 timesteps each
        models[f"wan-{size}"] = {"family": "wan-t2v", "checkpoint": TINY + "tiny-wan-t2v", "layers": [0, 1, 2],
                                 "timesteps": [100, 250, 500, 750], **VGM}
    for size in ("2b", "5b", "5b-i2v"):  # CogVideoX: 2 layers x 2 timesteps
        models[f"cogvideox-{size}"] = {"family": "cogvideox-t2v", "checkpoint": TINY + "tiny-cogvideox-t2v",
                                       "layers": [-2, -1], "timesteps": [250, 500], **VGM}
    for name in ("qwen2.5-vl-3b", "qwen2.5-vl-7b"):
        models[name] = {"family": "qwen2.5-vl", "checkpoint": TINY + "tiny-qwen2.5-vl", "layers": [-2, -1], **VLM}
    for name in ("qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b"):
        models[name] = {"family": "qwen3-vl", "checkpoint": TINY + "tiny-qwen3-vl", "layers": [-2, -1], **VLM}
    for name in ("internvl3-1b", "internvl3-2b", "internvl3-8b", "internvl3.5-4b", "internvl3.5-8b"):
        models[name] = {"family": "internvl", "checkpoint": TINY + "tiny-internvl", "layers": [-2, -1], **VLM}
    models["siglip2"] = {"family": "siglip", "checkpoint": TINY + "tiny-siglip", "layers": [-1], **VLM}
    models["clip-l"] = {"family": "clip", "checkpoint": TINY + "tiny-clip", "layers": [-1], **VLM}
    protocol = {"views": 2, "min_gap": 1, "window": 2, "snap_stride": 1}
    probes = {"linear": {}, "light": {"models": ["wan-14b", "qwen3-vl-8b", "wan+qwen"], "epochs": 1}}
    return {
        "seed": 0,
        "datasets": {"big": {"kind": "synthetic", "clips": clips, "frames": 17, "height": 64, "width": 64,
                             "val_fraction": 0.25}},
        "models": models,
        "fusions": {"wan+qwen": {"sources": ["wan-14b@t500@L2", "qwen3-vl-8b@none@L2"], "mode": "lnconcat",
                                 "materialise": True},
                    "wan+qwen-otf": {"sources": ["wan-14b@t500@L2", "qwen3-vl-8b@none@L2"], "mode": "concat"}},
        "extraction": {"clips_per_shard": clips_per_shard},
        "tasks": {task: {"options": dict(protocol), "probes": probes} for task in ("tagging", "instance", "geometry")},
    }


def snakemake_command(workdir: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(config), "--cores", "2", "-n", "--quiet", "rules"]


def timed_dry_run(workdir: Path, config: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, jobs) of one dry run; CPU time is the figure that other load on the
    machine does not inflate."""
    start, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(snakemake_command(workdir, config), capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, cwd=workdir)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if result.returncode != 0:
        sys.exit(result.stdout[-3000:] + result.stderr[-3000:])
    totals = [line.split() for line in (result.stdout + result.stderr).splitlines() if line.startswith("total ")]
    return seconds, cpu, int(totals[-1][1])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def profiled_dry_run(workdir: Path, config: Path, out: Path) -> pstats.Stats:
    command = snakemake_command(workdir, config)
    code = ("import sys, cProfile; from snakemake.cli import main; sys.argv = ['snakemake', *sys.argv[1:]]\n"
            f"cProfile.run('main()', {str(out)!r})")
    subprocess.run([sys.executable, "-c", code, *command[3:]], capture_output=True, text=True, cwd=workdir,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return pstats.Stats(str(out))


def cumulative(stats: pstats.Stats, path_part: str, name: str) -> float:
    """Cumulative seconds of the function ``name`` in files whose path contains ``path_part`` (largest)."""
    found = [value[3] for (filename, _, function), value in stats.stats.items()
             if path_part in filename and function == name]
    return max(found, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8000, help="synthetic clips (default 8000)")
    parser.add_argument("--clips-per-shard", type=int, default=16, help="clips per extraction job (default 16)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run (where the time goes)")
    args = parser.parse_args()
    config = paper_grid(args.clips, args.clips_per_shard)
    with tempfile.TemporaryDirectory(prefix="dag-scale-") as tmp:
        workdir = Path(tmp)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        seconds, cpu, jobs = timed_dry_run(workdir, config_path)
        stats = None if args.no_profile else profiled_dry_run(workdir, config_path, workdir / "dry-run.prof")

    from workflow.planning import WorkflowPlan, validate_config

    start = time.perf_counter()
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    WorkflowPlan(config)
    plan_seconds = time.perf_counter() - start

    print(f"Paper-scale dry run: {len(config['models'])} models, {args.clips} clips in shards of "
          f"{args.clips_per_shard}, {os.cpu_count()} CPUs")
    print(f"  snakemake -n: {seconds:.1f} s wall, {cpu:.1f} s CPU for {jobs} jobs = {1000 * seconds / jobs:.2f} ms "
          f"wall per job")
    print(f"  the plan alone, in this process: {plan_seconds:.1f} s")
    if stats is not None:
        print_profile(stats)


def print_profile(stats: pstats.Stats) -> None:
    print("  where the time goes (cumulative seconds under cProfile, which slows everything down):")
    parts = [
        ("whole run", cumulative(stats, "snakemake/cli.py", "main")),
        ("parsing the Snakefile (planning included)", cumulative(stats, "snakemake/workflow.py", "include")),
        ("  workflow.planning.WorkflowPlan", cumulative(stats, "workflow/planning/plan.py", "__init__")),
        ("  config validation (jsonschema)", cumulative(stats, "workflow/planning/config.py", "validate_config")),
        ("building the DAG (Snakemake's dag.init)", cumulative(stats, "snakemake/dag.py", "init")),
        ("  finding each input's producer (file2jobs)", cumulative(stats, "snakemake/dag.py", "file2jobs")),
        ("  creating jobs (wildcards, input functions)", cumulative(stats, "snakemake/dag.py", "new_job")),
        ("    rules' input/params functions", cumulative(stats, "snakemake/rules.py", "apply_input_function")),
        ("    rules' resources", cumulative(stats, "snakemake/rules.py", "expand_resources")),
        ("  what needs to run (update_needrun)", cumulative(stats, "snakemake/dag.py", "update_needrun")),
        ("post-processing the DAG (postprocess)", cumulative(stats, "snakemake/dag.py", "postprocess")),
        ("printing the dry run's jobs (printjob)", cumulative(stats, "snakemake/executors/dryrun.py", "printjob")),
        ("  reading each script job's source", cumulative(stats, "snakemake/script/__init__.py", "get_source")),
    ]
    width = max(len(label) for label, _ in parts)
    for label, value in parts:
        print(f"    {label:<{width}}  {value:7.1f} s")


if __name__ == "__main__":
    main()
