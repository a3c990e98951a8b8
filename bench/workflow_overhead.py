#!/usr/bin/env python
"""Snakemake's overhead on a whole DAG run: wall time versus the time the jobs themselves took.

Runs the workflow from scratch in a temporary working directory::

    snakemake --snakefile <repo>/Snakefile --directory TMP --configfile TMP/config.yaml --cores N --quiet

(``TMP/config.yaml`` is a copy of ``--config``, default the embedded demo ``config/config.yaml``; with
``--configfile`` the Snakefile does not load ``config/config.yaml`` itself, so the copy must be a full config.
Relative paths inside it resolve against TMP.) Before that it times a dry run (``-n``) in the empty
directory: parsing, config validation and DAG building alone.

Afterwards it reads every benchmark file the rules wrote (``TMP/results/benchmarks/<rule>/**.tsv``,
Snakemake's format: ``s``, ``h:m:s``, ``max_rss``, ..., ``cpu_time``) and reports the wall time, the number of
jobs, the sum of the jobs' own times (overall and per rule), and

* ``wall / (sum / cores)`` and ``wall - sum / cores``: against perfect packing of all jobs on the cores;
* the same against a DAG-shape-aware estimate in which the rules run one stage after another (as their
  dependencies mostly force) and each stage is packed on the cores: ``sum over rules of max(rule sum / cores,
  longest job)``.

A job's ``s`` is measured by Snakemake around the job's own work (for ``script:`` rules: the Python process
running the script, imports included), so the difference to the wall time is Snakemake's own work: parsing
and DAG building, scheduling, output checks and metadata, plus any idle cores the DAG's shape causes.

Run: ``.venv/bin/python bench/workflow_overhead.py`` (about a minute on 2 cores for the demo).
This is a benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchlib import find_snakemake, print_table

REPO = Path(__file__).resolve().parent.parent


@dataclass
class JobRecord:
    rule: str
    name: str
    seconds: float
    cpu_seconds: float | None
    max_rss_mb: float | None
    finished: float  # mtime of the benchmark file


def as_float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "NA", "-") else None
    except ValueError:
        return None


def read_benchmarks(root: Path) -> list[JobRecord]:
    """One record per benchmark file (rows of repeated benchmarks are summed); rule = first folder."""
    records = []
    for path in sorted(root.rglob("*.tsv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            continue
        seconds = sum(as_float(r.get("s")) or 0.0 for r in rows)
        cpu = [as_float(r.get("cpu_time")) for r in rows]
        rss = [as_float(r.get("max_rss")) for r in rows]
        relative = path.relative_to(root)
        records.append(JobRecord(
            rule=relative.parts[0] if len(relative.parts) > 1 else "(top)",
            name=str(relative.with_suffix("")),
            seconds=seconds,
            cpu_seconds=sum(c for c in cpu if c is not None) if any(c is not None for c in cpu) else None,
            max_rss_mb=max((r for r in rss if r is not None), default=None),
            finished=path.stat().st_mtime,
        ))
    return records


def job_stats(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: planned jobs per rule in Snakemake's (topological) order.

    The per-model extraction rules (extract_<model>) write their benchmarks under one 'extract' folder,
    so they are counted together as 'extract'."""
    stats: dict[str, int] = {}
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return stats
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        rule = "extract" if parts[0].startswith("extract_") else parts[0]
        stats[rule] = stats.get(rule, 0) + int(parts[1])
    return stats


def run_snakemake(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with log.open("w") as handle:
        rc = subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - start, rc


def fail(what: str, rc: int, log: Path, tmp: Path, keep: bool) -> int:
    print(f"\n{what} failed (exit {rc}); last lines of {log}:", file=sys.stderr)
    lines = log.read_text(errors="replace").splitlines()
    print("\n".join(lines[-40:]), file=sys.stderr)
    if not keep:
        print(f"(pass --keep to keep {tmp} for inspection)", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Snakemake overhead on a from-scratch run of the workflow: wall time vs the jobs' own "
                    "benchmark times. Prints figures; asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml",
                        help="full config to bench (copied into the temporary working directory)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--snakefile", type=Path, default=REPO / "Snakefile")
    parser.add_argument("--tmpdir", type=Path, default=None, help="parent of the temporary working directory")
    parser.add_argument("--no-dry-run", action="store_true", help="skip timing the dry run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    args = parser.parse_args(argv)
    if args.cores < 1:
        parser.error("--cores must be >= 1")
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")

    snakemake = find_snakemake()
    version = subprocess.run([snakemake, "--version"], capture_output=True, text=True).stdout.strip()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])

    tmp = Path(tempfile.mkdtemp(prefix="bench-workflow-", dir=args.tmpdir)).resolve()
    try:
        return bench(args, tmp, snakemake, version, env)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, tmp: Path, snakemake: str, version: str, env: dict[str, str]) -> int:
    config = tmp / "config.yaml"
    shutil.copyfile(args.config, config)
    base = [snakemake, "--snakefile", str(args.snakefile.resolve()), "--directory", str(tmp),
            "--configfile", str(config), "--cores", str(args.cores)]

    print(f"Workflow overhead benchmark  {time.strftime('%Y-%m-%d %H:%M')}  host {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Snakemake {version}")
    print(f"config {args.config}  ->  {tmp}")
    print(f"command: snakemake --snakefile {args.snakefile} --directory TMP --configfile TMP/config.yaml "
          f"--cores {args.cores} --quiet")
    print()

    dry_wall = None
    planned: dict[str, int] = {}
    if not args.no_dry_run:
        log = tmp / "dry-run.out"
        dry_wall, rc = run_snakemake(base + ["-n"], env, log)
        if rc:
            return fail("dry run", rc, log, tmp, args.keep)
        planned = job_stats(log.read_text(errors="replace"))
        shutil.rmtree(tmp / ".snakemake", ignore_errors=True)  # the real run starts from scratch

    log = tmp / "run.out"
    wall, rc = run_snakemake(base + ["--quiet"], env, log)
    if rc:
        return fail("snakemake run", rc, log, tmp, args.keep)

    records = read_benchmarks(tmp / "results" / "benchmarks")
    if not records:
        print(f"no benchmark files under {tmp / 'results' / 'benchmarks'}", file=sys.stderr)
        return 1
    cores = args.cores
    total = sum(r.seconds for r in records)
    cpu_known = [r.cpu_seconds for r in records if r.cpu_seconds is not None]
    by_rule: dict[str, list[JobRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.finished):
        by_rule[record.rule].append(record)  # rules in the order their first job finished
    if planned:  # the dry run's order (Snakemake's topological order) where it knows the rule
        by_rule = dict(sorted(by_rule.items(), key=lambda kv: list(planned).index(kv[0])
                              if kv[0] in planned else len(planned)))
    # DAG-shape-aware estimate: rules run as stages one after another, each packed on the cores
    staged = sum(max(sum(r.seconds for r in jobs) / cores, max(r.seconds for r in jobs)) for jobs in by_rule.values())

    print("PER RULE  (from the rules' benchmark files; s = Snakemake's wall time of the job's own work)")
    rows = []
    for rule, jobs in by_rule.items():
        seconds = [j.seconds for j in jobs]
        cpu = [j.cpu_seconds for j in jobs if j.cpu_seconds is not None]
        rss = [j.max_rss_mb for j in jobs if j.max_rss_mb is not None]
        rows.append([rule, str(len(jobs)), f"{sum(seconds):.1f}", f"{sum(seconds) / len(jobs):.1f}",
                     f"{max(seconds):.1f}", f"{sum(cpu):.1f}" if cpu else "-", f"{max(rss):.0f}" if rss else "-"])
    rows.append(["all rules", str(len(records)), f"{total:.1f}", f"{total / len(records):.1f}",
                 f"{max(r.seconds for r in records):.1f}", f"{sum(cpu_known):.1f}" if cpu_known else "-",
                 f"{max((r.max_rss_mb or 0) for r in records):.0f}"])
    print_table(["rule", "jobs", "sum s", "mean s", "max s", "sum cpu s", "max RSS MB"], rows, "lrrrrrr")
    print()

    print(f"OVERALL  ({cores} cores)")
    job_line = f"{len(records)} with benchmark files"
    if planned:
        job_line += (f"; {planned.get('total', sum(planned.values()))} planned by the dry run "
                     f"(incl. target rules without benchmarks: "
                     f"{', '.join(r for r in planned if r != 'total' and r not in by_rule) or 'none'})")
    rows = [
        ["jobs", job_line],
        ["wall time of the run", f"{wall:.1f} s"],
    ]
    if dry_wall is not None:
        rows.append(["wall time of a dry run (-n: parse, validate, DAG)", f"{dry_wall:.1f} s"])
    rows += [
        ["sum of job times", f"{total:.1f} s" + (f"  (cpu {sum(cpu_known):.1f} s)" if cpu_known else "")],
        ["ideal: sum / cores", f"{total / cores:.1f} s"],
        ["ratio wall / (sum / cores)", f"{wall / (total / cores):.2f}"],
        ["overhead wall - sum / cores", f"{wall - total / cores:.1f} s  ({100 * (wall - total / cores) / wall:.0f}% of wall)"],
        ["stage estimate: sum_rules max(sum/cores, longest)", f"{staged:.1f} s"],
        ["ratio wall / stage estimate", f"{wall / staged:.2f}"],
        ["overhead wall - stage estimate", f"{wall - staged:.1f} s  ({100 * (wall - staged) / wall:.0f}% of wall)"],
    ]
    if dry_wall is not None:
        rows.append(["  overhead left after the dry-run cost", f"{wall - staged - dry_wall:.1f} s "
                     f"(scheduling, per-job checks and metadata, idle cores)"])
    print_table(["figure", "value"], rows, "ll")
    print("notes: a job's s is its own wall time, so jobs sharing the cores (or a job's BLAS threads) inflate it "
          "and the overhead figures are then lower bounds; Snakemake samples cpu_time every 0.5 s, so it "
          "undercounts (up to ~0.5 s per job).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
