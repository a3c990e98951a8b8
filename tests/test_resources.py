"""Resources are declared once (the config's ``resources:`` section, a model's own ``resources:``) and reach
every job: dry runs of the DAG, read job by job."""

from __future__ import annotations

import copy

import pytest

from tests.test_profiles import dry_run_jobs
from tests.test_workflow import SMALL_CONFIG, snakemake
from workflow.planning.resources import DEFAULTS, PROBE_DEFAULTS

TORCH_PROBES = {"light": {"models": ["wan", "pixels"], "dim": 16, "epochs": 1},
                "paper": {"models": ["qwen"], "epochs": 1, "device": "cpu"}}


def config_with(**sections) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    config["tasks"]["geometry"]["probes"].update(copy.deepcopy(TORCH_PROBES))
    config.update(copy.deepcopy(sections))
    return config


def jobs_of(tmp_path, config: dict) -> list[dict]:
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dry_run_jobs(result.stdout + result.stderr)


def resources(job: dict) -> dict:
    """threads, mem_mb, runtime and gpu of a job, as ints, plus any other key it carries."""
    found = {key: job["resources"][key] for key in job["resources"]
             if key not in ("tmpdir", "mem", "mem_mib", "disk", "disk_mib", "group_slot")}
    found = {key: int(value) if value.isdigit() else value for key, value in found.items()}
    return {"threads": job["threads"], **found}


def test_defaults_reach_every_job_and_gpus_only_where_weights_or_torch_run(tmp_path):
    jobs = jobs_of(tmp_path, config_with())
    assert {job["rule"] for job in jobs} == {"dataset", "tiny_model", "extract_pixels", "extract_random_patch",
                                             "extract_wan", "extract_qwen", "feature_index", "fuse", "probe",
                                             "aggregate", "plots"}
    for job in jobs:
        rule, got = job["rule"], resources(job)
        if rule == "feature_index":  # runs inside Snakemake: a file listing shards
            assert got.get("gpu", 0) == 0 and job["threads"] == 1
            continue
        if rule.startswith("extract_"):
            weightless = rule in ("extract_pixels", "extract_random_patch")
            expected = {**DEFAULTS["extract"], "gpu": 0 if weightless else 1}
        elif rule == "probe":
            kind = job["wildcards"]["probe"]
            # the paper kind is set to device: cpu here, so it must not hold a GPU; light runs on auto
            expected = {**PROBE_DEFAULTS[kind], "gpu": 1 if kind == "light" else 0}
        else:
            expected = DEFAULTS[rule]
        # Snakemake caps a job's threads at --cores (2 here)
        assert got == {**expected, "threads": min(expected["threads"], 2)}, (rule, job["wildcards"])


def test_stage_kind_and_model_overrides_and_slurm_settings_pass_through(tmp_path):
    config = config_with(resources={
        "extract": {"mem_mb": 2000, "runtime": 15, "slurm_partition": "gpu", "gpu_model": "a100"},
        "probe": {"light": {"mem_mb": 3000, "gpu": 2}, "linear": {"runtime": 5}},
        "aggregate": {"slurm_extra": "'--qos=short'"},
    })
    config["models"]["wan"]["resources"] = {"mem_mb": 9000, "runtime": 90}
    config["models"]["pixels"]["resources"] = {"gpu": 1, "gres": "gpu:1"}  # a baseline never gets one
    jobs = jobs_of(tmp_path, config)
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(resources(job))
    assert by_rule["extract_wan"][0] == {"threads": 2, "mem_mb": 9000, "runtime": 90, "gpu": 1,
                                          "slurm_partition": "gpu", "gpu_model": "a100"}
    assert by_rule["extract_qwen"][0]["mem_mb"] == 2000 and by_rule["extract_qwen"][0]["gpu"] == 1
    pixels = by_rule["extract_pixels"][0]
    assert pixels["gpu"] == 0 and pixels["slurm_partition"] == "gpu"
    assert "gpu_model" not in pixels and "gres" not in pixels  # no GPU by any route
    probes = {(j["wildcards"]["probe"], j["wildcards"]["source"]): resources(j) for j in jobs if j["rule"] == "probe"}
    assert probes[("light", "wan@t500@L2")]["mem_mb"] == 3000 and probes[("light", "wan@t500@L2")]["gpu"] == 2
    assert all(r["runtime"] == 5 and r["gpu"] == 0 for (kind, _), r in probes.items() if kind == "linear")
    assert "slurm_partition" not in probes[("linear", "pixels@none@L0")]
    assert by_rule["aggregate"][0]["slurm_extra"] == "'--qos=short'"


@pytest.mark.parametrize(("resources", "message"), [
    ({"extract": {"mem_mb": "lots"}}, "resources.extract.mem_mb"),
    ({"probes": {}}, "resources: Additional properties are not allowed ('probes' was unexpected)"),
    ({"probe": {"light": {"gpu": -1}}}, "resources.probe.light.gpu"),
])
def test_bad_resources_fail_before_any_job_naming_the_key(tmp_path, resources, message):
    result = snakemake(tmp_path, config_with(resources=resources), "-n")
    assert result.returncode != 0 and message in result.stdout + result.stderr
