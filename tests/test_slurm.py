"""The cluster profile, for real: the DAG through ``--profile profiles/slurm`` on a local Slurm.

Needs a running Slurm (``tests/slurm/start-cluster.sh``, which ``.ci/run`` starts when it can install Debian's
slurm-wlm); skipped otherwise. One run of a small config through the profile as written, and at the same
time the same config locally (``--cores 2``). Then, per Slurm job, what sbatch received as Slurm reports it
(``scontrol show job``: time limit, memory, CPUs, GPUs; the test cluster keeps finished jobs for 600 s) is
checked against the resources its jobs declare, and the two results tables must hold the same numbers.

The config sets its own small ``resources:`` (the defaults are sized for a real cluster), with a different
runtime per stage so that a job that got another stage's request is caught. Only two things differ from
``profiles/slurm`` here, and neither is what is checked: no Slurm account (the test cluster has no
accounting) and a quicker first status check.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_profiles import dry_run_jobs
from tests.test_workflow import SNAKEMAKE


def _slurm_is_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(not _slurm_is_up(), reason="no local Slurm running")]

# A model family (wan: a GPU) and a baseline (pixels: none, although the extract stage asks for one), a
# linear probe per source and a torch probe (light, device auto: a GPU) on wan; one shard per model.
CONFIG = {
    "seed": 0,
    "datasets": {"tiny": {"kind": "synthetic", "clips": 16, "frames": 5, "height": 32, "width": 32,
                          "val_fraction": 0.25}},
    "models": {
        "pixels": {"family": "pixels", "layers": "all", "options": {"patch_size": 8}},
        "wan": {"family": "wan-t2v", "checkpoint": "resources/models/tiny-wan-t2v", "layers": [-1],
                "timesteps": [500], "options": {"frames": 5, "resolution": [32, 32], "random_init": True,
                                                "max_text_tokens": 8},
                "resources": {"mem_mb": 1200, "runtime": 18}},
    },
    "extraction": {"clips_per_shard": 16},
    "resources": {
        "dataset": {"threads": 1, "mem_mb": 600, "runtime": 11},
        "tiny_model": {"threads": 1, "mem_mb": 700, "runtime": 12},
        "extract": {"threads": 2, "mem_mb": 800, "runtime": 13, "gpu": 1},
        "aggregate": {"threads": 1, "mem_mb": 500, "runtime": 14},
        "plots": {"threads": 1, "mem_mb": 500, "runtime": 15},
        "probe": {"linear": {"threads": 1, "mem_mb": 400, "runtime": 16},
                  "light": {"threads": 1, "mem_mb": 900, "runtime": 17, "gpu": 1}},
    },
    "tasks": {"geometry": {"options": {"views": 2, "min_gap": 1, "window": 2, "snap_stride": 1},
                           "probes": {"linear": {}, "light": {"models": ["wan"], "dim": 16, "epochs": 1}}}},
}

# What each job must ask for, from CONFIG by the contract of docs/configuration.md#resources: a stage's
# resources, a model's own over `extract`, no GPU for a weightless source, a GPU for a torch probe kind.
EXPECTED = {
    "dataset": {"threads": 1, "mem_mb": 600, "runtime": 11, "gpu": 0},
    "tiny_model": {"threads": 1, "mem_mb": 700, "runtime": 12, "gpu": 0},
    "extract_pixels": {"threads": 2, "mem_mb": 800, "runtime": 13, "gpu": 0},
    "extract_wan": {"threads": 2, "mem_mb": 1200, "runtime": 18, "gpu": 1},
    "probe:linear": {"threads": 1, "mem_mb": 400, "runtime": 16, "gpu": 0},
    "probe:light": {"threads": 1, "mem_mb": 900, "runtime": 17, "gpu": 1},
    "aggregate": {"threads": 1, "mem_mb": 500, "runtime": 14, "gpu": 0},
    "plots": {"threads": 1, "mem_mb": 500, "runtime": 15, "gpu": 0},
}

SLURM_TEST_CLUSTER = ["--slurm-no-account", "--slurm-init-seconds-before-status-checks", "5"]


def _command(workdir: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), *args]


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(_command(workdir, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=workdir)


def _finish(process: subprocess.Popen, timeout: int = 900) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output


def job_key(rule: str, wildcards: dict[str, str]) -> str:
    """EXPECTED's key of a job: the rule, and for probes the probe kind."""
    return f"probe:{wildcards['probe']}" if rule == "probe" else rule


def _minutes(limit: str) -> int:
    """Slurm's TimeLimit ([days-]hours:minutes:seconds) in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + minutes + math.ceil(seconds / 60)


def _megabytes(memory: str) -> int:
    """Slurm's memory (e.g. 800M, 1200M, 2G) in MB as sbatch --mem counts them (MiB)."""
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", memory).groups()
    return round(float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[unit])


def slurm_job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o``: one job's fields."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def slurm_job_targets(job_id: str) -> list[tuple[str, dict[str, str]]]:
    """The Snakemake jobs a Slurm job ran (rule, wildcards): the --target-jobs of its batch script."""
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True,
                            timeout=30)
    assert script.returncode == 0, script.stderr
    words = shlex.split(next(line for line in script.stdout.splitlines() if "--target-jobs" in line))
    targets = []
    for word in words[words.index("--target-jobs") + 1:]:
        if word.startswith("--"):
            break
        rule, _, wildcards = word.partition(":")
        targets.append((rule, dict(item.split("=", 1) for item in wildcards.split(",") if item)))
    return targets


def requested(fields: dict[str, str]) -> dict[str, int]:
    """What Slurm holds as the job's request: CPUs, memory (MB), time limit (minutes), GPUs."""
    gpus = 0
    for key in ("TresPerJob", "TresPerNode", "TresPerTask"):
        for item in fields.get(key, "").split(","):
            match = re.fullmatch(r"gres[:/]gpu(?::[^:=]+)?[:=](\d+)", item)
            if match:
                gpus += int(match.group(1))
    return {"threads": int(fields["NumCPUs"]), "mem_mb": _megabytes(fields["MinMemoryNode"]),
            "runtime": _minutes(fields["TimeLimit"]), "gpu": gpus}


def group_request(members: list[dict[str, int]]) -> dict[str, int]:
    """A Slurm job's request for the Snakemake jobs it runs. The plugin runs a group job's members one after
    another, and the profile's group_slot makes Snakemake plan them so: the largest member's threads, memory
    and GPUs, the sum of their runtimes. A job of its own asks for exactly what it declares."""
    return {"threads": max(m["threads"] for m in members), "mem_mb": max(m["mem_mb"] for m in members),
            "runtime": sum(m["runtime"] for m in members), "gpu": max(m["gpu"] for m in members)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("slurm")
    profile = ["--profile", str(REPO / "profiles/slurm"), *SLURM_TEST_CLUSTER]
    # the same config on this machine, side by side with the Slurm run (which mostly waits)
    local = _start(root / "local", "--cores", "2")
    planned = _start(root / "slurm", *profile, "-n")
    planned_rc, planned_output = _finish(planned)
    slurm_rc, slurm_output = _finish(_start(root / "slurm", *profile))
    local_rc, local_output = _finish(local)
    assert planned_rc == 0, planned_output[-5000:]
    assert slurm_rc == 0, slurm_output[-5000:]
    assert local_rc == 0, local_output[-5000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: ", slurm_output)
    jobs = {job_id: {"fields": slurm_job(job_id), "targets": slurm_job_targets(job_id)} for job_id in submitted}
    declared = [job for job in dry_run_jobs(planned_output) if not job["local"]]
    return {"root": root, "output": slurm_output, "jobs": jobs, "declared": declared}


def _declared(job: dict) -> dict[str, int]:
    resources = job["resources"]
    return {"threads": job["threads"], "mem_mb": int(resources["mem_mb"]), "runtime": int(resources["runtime"]),
            "gpu": int(resources.get("gpu", 0))}


def test_jobs_declare_the_configs_resources(runs) -> None:
    # gpu only for the model family's extraction and the torch probe; a model's own resources over extract's
    declared = sorted((job_key(job["rule"], job["wildcards"]), tuple(_declared(job).items()))
                      for job in runs["declared"])
    expected = sorted((key, tuple(EXPECTED[key].items()))
                      for key in ["dataset", "tiny_model", "extract_pixels", "extract_wan", "probe:linear",
                                  "probe:linear", "probe:light", "aggregate", "plots"])
    assert declared == expected


def test_every_slurm_job_got_what_its_jobs_declare(runs) -> None:
    declared = {(job["rule"], tuple(sorted(job["wildcards"].items()))): _declared(job) for job in runs["declared"]}
    ran = []
    for job_id, job in runs["jobs"].items():
        members = [declared[(rule, tuple(sorted(wildcards.items())))] for rule, wildcards in job["targets"]]
        ran += [(rule, tuple(sorted(wildcards.items()))) for rule, wildcards in job["targets"]]
        got = requested(job["fields"])
        assert got == group_request(members), (job_id, job["targets"], job["fields"])
        assert job["fields"]["JobState"] == "COMPLETED", (job_id, job["fields"]["JobState"])
    # every job but Snakemake's local ones (feature indexes) went through sbatch, each once
    assert sorted(ran) == sorted(declared), (sorted(ran), sorted(declared))


def test_grouped_slurm_jobs_hold_linear_probes_only(runs) -> None:
    for job_id, job in runs["jobs"].items():
        if len(job["targets"]) > 1:
            kinds = {(rule, wildcards.get("probe")) for rule, wildcards in job["targets"]}
            assert kinds == {("probe", "linear")}, (job_id, job["targets"])
            assert len(job["targets"]) <= 10


def test_linear_probes_share_one_slurm_job(runs) -> None:
    linear = [job_id for job_id, job in runs["jobs"].items()
              if any(rule == "probe" and w["probe"] == "linear" for rule, w in job["targets"])]
    assert len(linear) == 1 and len(runs["jobs"][linear[0]]["targets"]) == 2
    assert "/group_probes-linear" in runs["jobs"][linear[0]]["fields"]["StdOut"]


def _table(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def _same_cell(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return x == y or (math.isnan(x) and math.isnan(y))


def test_slurm_and_local_runs_give_the_same_results_table(runs) -> None:
    local = _table(runs["root"] / "local/results/tables/metrics.csv")
    slurm = _table(runs["root"] / "slurm/results/tables/metrics.csv")
    assert local[0] == slurm[0] and len(local) == len(slurm) > 10
    different = [(i, local[0][j], a, b) for i, (row_a, row_b) in enumerate(zip(local, slurm))
                 for j, (a, b) in enumerate(zip(row_a, row_b)) if not _same_cell(a, b)]
    assert different == [], different[:10]
    assert (runs["root"] / "slurm/results/plots/tiny").is_dir()
