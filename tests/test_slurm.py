"""The cluster profile, for real: the DAG through Snakemake's Slurm executor on a local Slurm.

Needs a running Slurm (``tests/slurm/start-cluster.sh``, which ``.ci/run`` starts when it can install
Debian's slurm-wlm); skipped otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_workflow import SMALL_CONFIG, snakemake


def _slurm_is_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(not _slurm_is_up(), reason="no local Slurm running")]


def test_dag_runs_through_the_slurm_profile(tmp_path: Path) -> None:
    # Only what a one-node test box needs differs from profiles/slurm: no account, quick status checks,
    # and requests that fit its memory.
    result = snakemake(tmp_path, SMALL_CONFIG, "--profile", str(REPO / "profiles/slurm"), "--slurm-no-account",
                       "--slurm-init-seconds-before-status-checks", "5",
                       "--default-resources", "mem_mb=1000", "cpus_per_task=1", "runtime=30",
                       "--set-resources", "extract:mem_mb=1000", "extract:cpus_per_task=1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert (tmp_path / "results/tables/headline.md").exists() and (tmp_path / "results/plots/tiny").is_dir()
    submitted = set(re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+)/", output))
    rules = sorted(rule for _, rule in submitted)
    # every dataset, extract, fuse, probe, aggregate and plots job went through sbatch
    assert rules == (["aggregate", "dataset"] + ["extract_pixels"] * 2 + ["extract_qwen"] * 2
                     + ["extract_random_patch"] * 2 + ["extract_wan"] * 2 + ["fuse"] * 2 + ["plots"]
                     + ["probe"] * 7 + ["tiny_model"] * 2), rules
    # model-family extraction jobs asked Slurm for the (fake) GPU; baselines did not
    gpu_jobs = re.findall(r"rule (extract_\w+):.*?resources: [^\n]*?gpu=(\d)", output, re.S)
    assert dict(gpu_jobs) == {"extract_pixels": "0", "extract_random_patch": "0", "extract_wan": "1",
                              "extract_qwen": "1"}
