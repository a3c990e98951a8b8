#!/usr/bin/env python
"""What a Slurm job costs beyond its own work, with and without grouping the many small probe jobs.

Needs a running Slurm (``tests/slurm/start-cluster.sh`` starts a single-node one on this machine). Runs a
probe-heavy DAG through ``--profile profiles/slurm``:

1. once, locally (``--cores N --omit-from probe``): the dataset and its features, not timed;
2. per variant, in a copy of that working directory, everything left (the linear probe jobs, the tables
   and the plots) through Slurm::

       snakemake --snakefile <repo>/Snakefile --directory TMP/<variant> --configfile TMP/config.yaml \\
           --profile <repo>/profiles/slurm --slurm-no-account --jobs <cores> \\
           --group-components probes-linear=<size>

   Variants are group sizes (``--sizes``, default ``1,10``): 1 is one Slurm job per probe job, 10 is the
   profile as written (``group-components: {probes-linear: 10}``). ``--jobs`` (default: this machine's
   cores) keeps the Slurm jobs from crowding the real CPUs, as each would have its own on a cluster.

Afterwards it asks Slurm about every job it submitted (``scontrol show job``: submit, start and end time,
CPUs; ``scontrol write batch_script``: which Snakemake jobs it ran; the test cluster keeps finished jobs for
600 s) and reads the jobs' own times from their benchmark files (Snakemake's ``s``: the job's own work, a
``script:`` rule's Python process included). Figures per variant:

* ``wall / job``: the run's wall time over the Snakemake jobs it ran;
* ``start-up per job``: per Slurm job, its elapsed time less the own times of the jobs it ran (the plugin
  runs a group job's members one after another), summed and divided by the Snakemake jobs. A Slurm job
  starts Snakemake in its batch script, and again, through srun, for each job it runs; each start parses
  the workflow;
* ``allocated beyond own per job``: CPU-seconds Slurm held (elapsed x CPUs) less the CPU-seconds of the
  jobs' own work (s x threads), per Snakemake job: what the cluster bills for nothing;
* queue wait (start - submit) and the number of sbatch calls;
* the machine's busy CPU time during the run (``/proc/stat``: Slurm's jobs, the submitting Snakemake and
  anything else running), per Snakemake job: on a quiet machine, what the work really cost.

The bench DAG has only linear probes, so on a checkout whose probe rule does not yet put each probe kind
in its own group (``probes-<kind>``), it adds ``--groups probe=probes-linear`` and says so.

Run: ``.venv/bin/python bench/slurm_overhead.py`` (about 7 minutes on 2 cores). This is a benchmark, not a
test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from benchlib import find_snakemake, print_table

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "profiles" / "slurm"


def bench_config(depth: int, tasks: list[str]) -> dict:
    """A probe-heavy DAG on a tiny synthetic dataset: `depth` random-patch layers, raw pixels and noise, each
    probed linearly on every task; small resources so that many jobs fit a one-node test cluster."""
    options = {"views": 2, "min_gap": 1, "window": 2, "snap_stride": 1}
    task_options = {"tagging": {"min_pixels": 20}, "instance": {"min_cluster_size": 5, "min_samples": 2}}
    small = {"threads": 1, "mem_mb": 500, "runtime": 20}
    return {
        "seed": 0,
        "datasets": {"tiny": {"kind": "synthetic", "clips": 16, "frames": 5, "height": 32, "width": 32,
                              "val_fraction": 0.25}},
        "models": {
            "pixels": {"family": "pixels", "layers": "all", "options": {"patch_size": 8}},
            "noise": {"family": "noise", "layers": "all", "options": {"patch_size": 8, "channels": 16}},
            "random-patch": {"family": "random-patch", "layers": "all",
                             "options": {"patch_size": 8, "channels": 16, "depth": depth}},
        },
        "extraction": {"clips_per_shard": 16},
        "resources": {**{stage: dict(small) for stage in ("dataset", "extract", "aggregate", "plots")},
                      "probe": {"linear": {"threads": 1, "mem_mb": 400, "runtime": 20}}},
        "tasks": {task: {"options": {**options, **task_options.get(task, {})}, "probes": {"linear": {}}}
                  for task in tasks},
    }


@dataclass
class SlurmJob:
    job_id: str
    cpus: int
    submit: datetime
    start: datetime
    end: datetime
    targets: list[str] = field(default_factory=list)  # rule:wildcards of the Snakemake jobs it ran

    @property
    def elapsed(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def wait(self) -> float:
        return (self.start - self.submit).total_seconds()


@dataclass
class Variant:
    name: str
    size: int
    wall: float = 0.0
    cpu: float | None = None  # the machine's busy CPU-seconds during the run
    slurm_jobs: list[SlurmJob] = field(default_factory=list)
    own: dict[str, tuple[float, int]] = field(default_factory=dict)  # benchmark path -> (s, threads)


def slurm_is_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


def scontrol_job(job_id: str) -> SlurmJob:
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True)
    fields = dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True)
    targets: list[str] = []
    line = next((line for line in script.stdout.splitlines() if "--target-jobs" in line), "")
    if line:
        words = shlex.split(line)
        for word in words[words.index("--target-jobs") + 1:]:
            if word.startswith("--"):
                break
            targets.append(word)
    stamp = datetime.fromisoformat
    return SlurmJob(job_id, int(fields["NumCPUs"]), stamp(fields["SubmitTime"]), stamp(fields["StartTime"]),
                    stamp(fields["EndTime"]), targets)


def own_times(workdir: Path, rules: list[str], threads: dict[str, int]) -> dict[str, tuple[float, int]]:
    """Benchmark s (summed over repeats) and threads of each job of `rules`, by benchmark file."""
    found = {}
    for rule in rules:
        for path in sorted((workdir / "results" / "benchmarks" / rule).rglob("*.tsv")):
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            found[str(path.relative_to(workdir))] = (sum(float(r["s"]) for r in rows), threads.get(rule, 1))
    return found


def machine_cpu_seconds() -> float | None:
    """CPU time this machine has spent busy since boot (all processes: /proc/stat), or None."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return None
    busy = sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def run(command: list[str], log: Path, env: dict[str, str]) -> tuple[float, int, float | None]:
    """Wall time, exit status and the machine's busy CPU-seconds meanwhile (Slurm's jobs included)."""
    cpu_before = machine_cpu_seconds()
    start = time.perf_counter()
    with log.open("w") as handle:
        rc = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    cpu_after = machine_cpu_seconds()
    return wall, rc, None if cpu_before is None or cpu_after is None else cpu_after - cpu_before


def fail(what: str, log: Path) -> int:
    print(f"\n{what} failed; last lines of {log}:", file=sys.stderr)
    print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-job overhead of the probe stage through the real (local) Slurm, with and without "
                    "grouping probe jobs. Prints figures; asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="1,10",
                        help="group sizes to compare (probes-linear group-components); 1 = one Slurm job each")
    parser.add_argument("--depth", type=int, default=8, help="random-patch layers (sources: depth + 2)")
    parser.add_argument("--tasks", default="geometry,tagging", help="tasks, each with a linear probe per source")
    parser.add_argument("--cores", type=int, default=2, help="cores of the local preparation run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="Slurm jobs at once (the profile's jobs: 50 would run more jobs than this machine "
                             "has cores, and their contention would swamp the start-up costs)")
    parser.add_argument("--init-seconds", type=int, default=None,
                        help="override the profile's slurm-init-seconds-before-status-checks")
    parser.add_argument("--tmpdir", type=Path, default=None, help="parent of the temporary working directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if not sizes or min(sizes) < 1:
        parser.error("--sizes: positive integers")
    if not slurm_is_up():
        print("no Slurm answers (sinfo); start one with: bash tests/slurm/start-cluster.sh", file=sys.stderr)
        return 2

    snakemake = find_snakemake()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONWARNINGS"] = "ignore"
    tmp = Path(tempfile.mkdtemp(prefix="bench-slurm-", dir=args.tmpdir)).resolve()
    try:
        return bench(args, sizes, tmp, snakemake, env)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, sizes: list[int], tmp: Path, snakemake: str, env: dict[str, str]) -> int:
    config = bench_config(args.depth, args.tasks.split(","))
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    version = subprocess.run([snakemake, "--version"], capture_output=True, text=True).stdout.strip()
    node = subprocess.run(["sinfo", "-h", "-o", "%c CPUs, %m MB, %G"], capture_output=True, text=True).stdout
    print(f"Slurm overhead benchmark  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Snakemake {version}")
    print(f"Slurm node: {node.strip()} (announced; jobs share this machine's CPUs)")

    def base(workdir: Path) -> list[str]:
        return [snakemake, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                "--configfile", str(tmp / "config.yaml")]

    prepared = tmp / "prepared"
    wall, rc, _ = run(base(prepared) + ["--cores", str(args.cores), "--omit-from", "probe"], tmp / "prepare.out",
                      env)
    if rc:
        return fail("local preparation run", tmp / "prepare.out")
    print(f"prepared the dataset and features locally in {wall:.0f} s ({tmp / 'prepare.out'})")

    profile = ["--profile", str(PROFILE), "--slurm-no-account", "--jobs", str(args.jobs)]
    if args.init_seconds is not None:
        profile += ["--slurm-init-seconds-before-status-checks", str(args.init_seconds)]
    dry = subprocess.run(base(prepared) + profile + ["-n"], capture_output=True, text=True, env=env)
    if dry.returncode:
        print(dry.stdout[-3000:] + dry.stderr[-3000:], file=sys.stderr)
        return 1
    planned = len(re.findall(r"^\s*rule probe:", dry.stdout + dry.stderr, flags=re.M))
    extra: list[str] = []
    if "Group job probes-linear" not in dry.stdout + dry.stderr:
        extra = ["--groups", "probe=probes-linear"]
        print("note: the probe rule declares no per-kind group here; adding --groups probe=probes-linear "
              "(the bench DAG has linear probes only)")
    print(f"timed part: {planned} linear probe jobs, the tables and the plots, through --profile {PROFILE}")
    print()

    variants = []
    for size in sizes:
        name = f"group size {size}" + (" (profile as written)" if size == 10 else "")
        variant = Variant(name, size)
        workdir = tmp / f"size-{size}"
        shutil.copytree(prepared, workdir, symlinks=True)
        log = tmp / f"size-{size}.out"
        command = base(workdir) + profile + extra + ["--group-components", f"probes-linear={size}"]
        variant.wall, rc, variant.cpu = run(command, log, env)
        if rc:
            return fail(f"Slurm run ({name})", log)
        submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log.read_text(errors="replace"))
        variant.slurm_jobs = [scontrol_job(job_id) for job_id in submitted]
        threads = {"probe": 1, "aggregate": 1, "plots": 1}
        variant.own = own_times(workdir, ["probe", "aggregate", "plots"], threads)
        variants.append(variant)
        print(f"{name}: {variant.wall:.0f} s, {len(variant.slurm_jobs)} Slurm jobs ({log})")

    same = len({(tmp / f"size-{v.size}" / "results/tables/metrics.csv").read_bytes() for v in variants}) == 1
    print()
    print_table(["figure", *(v.name for v in variants)], figures(variants), "l" + "r" * len(variants))
    print()
    print(f"results tables (metrics.csv) of the variants identical: {'yes' if same else 'NO'}")
    print("notes: start-up per job = Slurm elapsed less the own times of the jobs a Slurm job ran; "
          "allocated beyond own = elapsed x CPUs less s x threads of its jobs. The test node announces more "
          "CPUs than the machine has, so jobs running side by side slow each other: own and elapsed times "
          "are those of a loaded machine; the machine's CPU time is not. Snakemake notices a finished job at "
          "its next status check (every 20 s or more, growing by 10 s while none finishes), which the wall "
          "times include.")
    return 0


def figures(variants: list[Variant]) -> list[list[str]]:
    rows: dict[str, list[str]] = {}

    def add(label: str, value: str) -> None:
        rows.setdefault(label, []).append(value)

    for v in variants:
        jobs = len(v.own)
        own = sum(s for s, _ in v.own.values())
        own_cpu = sum(s * t for s, t in v.own.values())
        by_target = {}
        for path, (seconds, _) in v.own.items():
            by_target[path] = seconds
        startup = 0.0
        for job in v.slurm_jobs:  # members run one after another
            startup += job.elapsed - sum(by_target.get(benchmark_of(t), 0.0) for t in job.targets)
        allocated = sum(job.elapsed * job.cpus for job in v.slurm_jobs)
        waits = [job.wait for job in v.slurm_jobs]
        add("Snakemake jobs run (probe, aggregate, plots)", str(jobs))
        add("Slurm jobs (sbatch calls)", str(len(v.slurm_jobs)))
        add("wall time of the run", f"{v.wall:.0f} s")
        add("wall time / Snakemake job", f"{v.wall / jobs:.1f} s")
        add("sum of the jobs' own time (benchmark s)", f"{own:.0f} s")
        add("sum of Slurm jobs' elapsed time", f"{sum(job.elapsed for job in v.slurm_jobs):.0f} s")
        add("start-up per Snakemake job (elapsed - own)", f"{startup / jobs:.1f} s")
        add("allocated CPU-s beyond own CPU-s, per job", f"{(allocated - own_cpu) / jobs:.1f} s")
        add("mean queue wait (start - submit)", f"{sum(waits) / len(waits):.1f} s")
        add("machine CPU time during the run, per job", "-" if v.cpu is None else f"{v.cpu / jobs:.1f} s")
    return [[label, *values] for label, values in rows.items()]


def benchmark_of(target: str) -> str:
    """The benchmark file of a --target-jobs entry (rule:wildcards), as the rules name them."""
    rule, _, wildcards = target.partition(":")
    w = dict(item.split("=", 1) for item in wildcards.split(",") if item)
    if rule == "probe":
        return f"results/benchmarks/probe/{w['dataset']}/{w['task']}/{w['source']}/{w['probe']}.tsv"
    if rule == "aggregate":
        return "results/benchmarks/aggregate/tables.tsv"
    if rule == "plots":
        return "results/benchmarks/plots/plots.tsv"
    return ""


if __name__ == "__main__":
    sys.exit(main())
