"""The Slurm profile without Slurm: dry runs through ``--profile profiles/slurm`` (and the named profile
``--profile slurm`` after ``profiles/install.sh``) show what every job would ask of Slurm.

A dry run needs no running Slurm: Snakemake plans with its dry-run executor, and the Slurm plugin only asks
``scontrol`` for its help text (where no controller answers, that costs a ~10 s timeout per start).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.test_workflow import SMALL_CONFIG, SNAKEMAKE
from workflow.planning.resources import DEFAULTS, PROBE_DEFAULTS

PROFILE = REPO / "profiles/slurm"
TORCH_PROBES = {"light": {"models": ["wan", "pixels"], "dim": 16, "epochs": 1},
                "paper": {"models": ["qwen"], "epochs": 1, "device": "cpu"}}
LINEAR_GROUP = "probes-linear"


def profile_config() -> dict[str, Any]:
    """SMALL_CONFIG with the torch probe kinds: light on auto (a GPU), paper on the CPU (none)."""
    config = copy.deepcopy(SMALL_CONFIG)
    config["tasks"]["geometry"]["probes"].update(copy.deepcopy(TORCH_PROBES))
    return config


def dry_run(workdir: Path, config: dict, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``snakemake -n`` with the given profile arguments and no --cores, as on a cluster (where --cores would
    cap every job's threads)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "-n", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd or workdir, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


def local_rules() -> set[str]:
    """Rules Snakemake runs itself (``localrule: True`` in workflow/rules/), never submitted to Slurm. A dry
    run prints them like any rule."""
    found = set()
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.split(r"^(?=rule )", path.read_text(), flags=re.M):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s+localrule:\s*True", block, flags=re.M):
                found.add(name[1])
    return found


_HEADER = re.compile(r"^(?P<indent> *)(?P<local>local)?(?:rule|checkpoint) (?P<rule>\w+):$")
_GROUP = re.compile(r"^\[[^\]]+\] Group job (?P<group>\S+) \(jobs in lexicogr\. order\):$")


def dry_run_jobs(output: str) -> list[dict[str, Any]]:
    """Every job a dry run prints (target rule `all` left out): rule, whether Snakemake runs it itself
    (localrule), its group's name and which group job it is in (members of a group job are printed indented
    under one "Group job <name>" line; a number per such line), threads, wildcards and resources."""
    jobs: list[dict[str, Any]] = []
    local = local_rules()
    group, group_job, groups_seen = None, None, 0
    job = None
    for line in output.splitlines():
        if match := _GROUP.match(line):
            groups_seen += 1
            group, group_job, job = match["group"], groups_seen, None
            continue
        if match := _HEADER.match(line):
            indent = len(match["indent"])
            if indent == 0:
                group, group_job = None, None
            job = {"rule": match["rule"], "local": bool(match["local"]) or match["rule"] in local, "group": group,
                   "group_job": group_job, "threads": 1, "wildcards": {}, "resources": {}, "_indent": indent + 4}
            if match["rule"] != "all":
                jobs.append(job)
            continue
        if job is None:
            continue
        field = re.match(r"^( *)(\w+): (.*)$", line)
        if field is None or len(field[1]) != job["_indent"]:
            if not line.strip() or not line.startswith(" "):
                job = None
            continue
        key, value = field[2], field[3]
        if key == "threads":
            job["threads"] = int(value)
        elif key in ("wildcards", "resources"):
            job[key] = dict(item.split("=", 1) for item in value.split(", ") if "=" in item)
    for job in jobs:
        job.pop("_indent")
    return jobs


def asked(job: dict[str, Any]) -> dict[str, int]:
    resources = job["resources"]
    return {"threads": job["threads"], "mem_mb": int(resources["mem_mb"]), "runtime": int(resources["runtime"]),
            "gpu": int(resources.get("gpu", 0))}


def contract(job: dict[str, Any]) -> dict[str, int]:
    """What docs/configuration.md#resources says a job of a config without `resources:` asks for."""
    rule = job["rule"]
    if rule.startswith("extract_"):
        weightless = rule in ("extract_pixels", "extract_random_patch")
        return {**DEFAULTS["extract"], "gpu": 0 if weightless else 1}
    if rule == "probe":
        kind = job["wildcards"]["probe"]
        return {**PROBE_DEFAULTS[kind], "gpu": 1 if kind == "light" else 0}  # paper is on device: cpu here
    return dict(DEFAULTS[rule])


@pytest.fixture(scope="module")
def profile_dry_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    result = dry_run(tmp_path_factory.mktemp("profile"), profile_config(), "--profile", str(PROFILE))
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return dry_run_jobs(result.stdout + result.stderr)


def test_profile_holds_cluster_settings_only() -> None:
    profile = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    # per-job requests come from the config's resources: section, not from rule names or profile defaults
    assert "set-resources" not in profile and "set-threads" not in profile
    for key in ("cpus_per_task", "mem_mb", "runtime", "gpu", "gres", "gpu_model"):
        assert key not in (profile.get("default-resources") or {}), key
    # --cores only as a ceiling above any job's threads (a dry run plans with it, else with 1 core); the one
    # --resources limit is a group job's group_slot (its members run one after another), per group job
    assert profile["cores"] >= 64
    assert profile["resources"] == {"group_slot": 1} and profile["set-resource-scopes"] == {"group_slot": "local"}
    assert profile["group-components"] == {LINEAR_GROUP: 10}


def test_every_job_asks_slurm_for_what_the_config_declares(profile_dry_run) -> None:
    jobs = [job for job in profile_dry_run if not job["local"]]
    assert {job["rule"] for job in jobs} == {"dataset", "tiny_model", "extract_pixels", "extract_random_patch",
                                             "extract_wan", "extract_qwen", "fuse", "probe", "aggregate", "plots"}
    kinds = {job["wildcards"]["probe"] for job in jobs if job["rule"] == "probe"}
    assert kinds == {"linear", "light", "paper"}
    for job in jobs:
        # threads are not capped (no --cores), and the plugin's --cpus-per-task comes from them
        assert asked(job) == contract(job), (job["rule"], job["wildcards"])
        assert "cpus_per_task" not in job["resources"], job["rule"]
        assert not {"slurm_partition", "slurm_account", "gres", "gpu_model"} & set(job["resources"]), job


def test_linear_probes_are_grouped_and_torch_probes_are_not(profile_dry_run) -> None:
    probes = [job for job in profile_dry_run if job["rule"] == "probe"]
    linear = [job for job in probes if job["wildcards"]["probe"] == "linear"]
    # 7 linear probes: one group job (up to 10 members each)
    assert len(linear) == 7 and {job["group"] for job in linear} == {LINEAR_GROUP}
    assert len({job["group_job"] for job in linear}) == 1
    # torch kinds stay one probe per Slurm job: ungrouped, or alone in a group job of their kind
    torch = [job for job in probes if job["wildcards"]["probe"] != "linear"]
    assert len(torch) == 3
    for job in torch:
        assert job["group"] in (None, f"probes-{job['wildcards']['probe']}"), job
        assert job["group_job"] is None or sum(j["group_job"] == job["group_job"] for j in profile_dry_run) == 1
    # nothing else is grouped
    assert all(job["group"] is None for job in profile_dry_run if job["rule"] != "probe")


def test_grouped_jobs_are_planned_one_after_another(profile_dry_run) -> None:
    # The plugin runs a group job's members one after another; with one group_slot per job and per group
    # job (the profile's --resources, local scope), Snakemake asks Slurm for the sum of their runtimes
    # rather than the longest, and for one member's CPUs rather than all of theirs.
    grouped = [job for job in profile_dry_run if job["group"] is not None]
    assert grouped and all(job["resources"].get("group_slot") == "1" for job in grouped)


def test_named_profile_after_the_install_step(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHON": str(Path(SNAKEMAKE).with_name("python"))}
    config = profile_config()
    before = dry_run(tmp_path / "before", config, "--profile", "slurm", cwd=REPO, env=home)
    assert before.returncode != 0 and "profile directory given (slurm)" in before.stderr

    install = subprocess.run(["bash", str(REPO / "profiles/install.sh")], capture_output=True, text=True,
                             env={**os.environ, **home}, timeout=120)
    link = tmp_path / "config/snakemake/slurm"
    assert install.returncode == 0, install.stderr
    assert f"linked {link} -> {PROFILE.resolve()}" in install.stdout
    assert link.is_symlink() and link.resolve() == PROFILE.resolve()
    again = subprocess.run(["bash", str(REPO / "profiles/install.sh")], capture_output=True, text=True,
                           env={**os.environ, **home}, timeout=120)
    assert again.returncode == 0 and "already linked" in again.stdout

    named = dry_run(tmp_path / "named", config, "--profile", "slurm", cwd=REPO, env=home)
    assert named.returncode == 0, named.stderr[-3000:]
    assert "Using profiles slurm and workflow specific profile" in named.stderr
    by_path = dry_run(tmp_path / "path", config, "--profile", "profiles/slurm", cwd=REPO, env=home)
    assert by_path.returncode == 0, by_path.stderr[-3000:]

    def plan(result: subprocess.CompletedProcess) -> list[tuple]:
        return sorted((j["rule"], j["group"], tuple(sorted(j["wildcards"].items())), tuple(asked(j).items()))
                      for j in dry_run_jobs(result.stdout + result.stderr) if not j["local"])

    assert plan(named) == plan(by_path) != []
    assert not (Path(home["HOME"]) / ".config").exists()  # nothing went to a home folder


def test_install_step_leaves_a_foreign_profile_alone(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHON": str(Path(SNAKEMAKE).with_name("python"))}
    folder = tmp_path / "config/snakemake"
    folder.mkdir(parents=True)
    (folder / "slurm").symlink_to(tmp_path)
    refused = subprocess.run(["bash", str(REPO / "profiles/install.sh")], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "--force" in refused.stderr and (folder / "slurm").resolve() == tmp_path
    forced = subprocess.run(["bash", str(REPO / "profiles/install.sh"), "--force"], capture_output=True, text=True,
                            env=env)
    assert forced.returncode == 0 and (folder / "slurm").resolve() == PROFILE.resolve()
    (folder / "slurm").unlink()
    (folder / "slurm").mkdir()
    kept = subprocess.run(["bash", str(REPO / "profiles/install.sh"), "--force"], capture_output=True, text=True,
                          env=env)
    assert kept.returncode == 1 and "is not a link" in kept.stderr and (folder / "slurm").is_dir()
