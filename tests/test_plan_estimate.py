"""Before anything runs, a user sees what a config costs: jobs and feature-cache size per model and in total
(``snakemake -n`` prints the table; ``snakemake plan`` prints it alone)."""

from __future__ import annotations

import copy
import re

from tests.conftest import REPO
from tests.test_feature_shape import wan_14b_checkpoint
from tests.test_workflow import SMALL_CONFIG, snakemake
from workflow.planning import WorkflowPlan, validate_config
from workflow.planning.estimate import format_plan, model_costs


def planned(config: dict) -> WorkflowPlan:
    config = copy.deepcopy(config)
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    return WorkflowPlan(config)


def test_a_paper_scale_config_says_it_writes_terabytes(tmp_path):
    """Wan2.1-14B stores 21 x 30 x 52 x 5120 float16 per clip and layer (335 MB): 6,000 clips x 2 layers."""
    checkpoint = str(wan_14b_checkpoint(tmp_path / "Wan2.1-T2V-14B"))
    plan = planned({
        "datasets": {"big": {"kind": "synthetic", "clips": 6000, "frames": 81, "height": 480, "width": 832}},
        "models": {"wan-14b": {"preset": "Wan2.1-T2V-14B", "checkpoint": checkpoint, "layers": [20, 30],
                               "timesteps": [500]},
                   "pixels": {"family": "pixels", "options": {"patch_size": 16}}},
        "extraction": {"clips_per_shard": 32},
        "tasks": {"geometry": {"probes": {"linear": {}}}},
    })
    costs = {cost.name: cost for cost in model_costs(plan)}
    assert costs["wan-14b"].bytes == 6000 * 2 * 21 * 30 * 52 * 5120 * 2
    assert costs["wan-14b"].extraction_jobs == 188 and costs["wan-14b"].probe_jobs == 2
    assert costs["pixels"].bytes == 6000 * 81 * 30 * 52 * 3 * 2
    table = format_plan(plan)
    assert re.search(r"wan-14b\s+vgm\s+2\s+188\s+2\s+4\.0 TB", table), table
    assert "dataset big: 6000 clips of 81 frames at 480x832 (from the config)" in table
    assert re.search(r"total: \d+ jobs in the whole DAG .*feature cache 4\.0 TB", table), table


def test_dry_run_prints_the_plan_and_the_plan_rule_runs_nothing_else(tmp_path):
    dry = snakemake(tmp_path, SMALL_CONFIG, "-n")
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    # pixels: 16 clips x 5 frames x (32/8)^2 cells x 3 channels x 2 bytes
    assert re.search(r"pixels\s+baseline\s+1\s+2\s+1\s+7\.7 KB", output), output[:3000]
    assert "Plan: feature cache" in output and "total:" in output
    alone = snakemake(tmp_path, SMALL_CONFIG, "plan")
    output = alone.stdout + alone.stderr
    assert alone.returncode == 0, output[-3000:]
    assert re.search(r"pixels\s+baseline", output) and "1 of 1 steps (100%) done" in output
    assert not (tmp_path / "results/data").exists()  # nothing but the table


def test_attention_captures_are_sources_of_their_own_and_count_in_the_cache(tmp_path):
    """capture: [output, attn_k] doubles a model's sources, probe jobs and cache; per-head keys split the same
    bytes over more sources; a fusion may name an attention source."""
    checkpoint = str(wan_14b_checkpoint(tmp_path / "Wan2.1-T2V-14B"))
    dataset = {"big": {"kind": "synthetic", "clips": 6000, "frames": 81, "height": 480, "width": 832}}
    wan = {"preset": "Wan2.1-T2V-14B", "checkpoint": checkpoint, "layers": [20], "timesteps": [500]}
    config = {"datasets": dataset, "extraction": {"clips_per_shard": 32},
              "tasks": {"geometry": {"probes": {"linear": {}}}}}
    plain = model_costs(planned({**config, "models": {"wan": wan}}))[0]
    keys = planned({**config, "models": {"wan": {**wan, "capture": ["output", "attn_k"]}},
                    "fusions": {"keys+out": {"sources": ["wan@t500@L20.attn_k", "wan@t500@L20"]}}})
    assert [str(s) for s in keys.sources(["wan"])] == ["wan@t500@L20", "wan@t500@L20.attn_k"]
    cost = model_costs(keys)[0]
    assert (cost.sources, cost.probe_jobs, cost.bytes) == (2, 2, 2 * plain.bytes)
    heads = planned({**config, "models": {"wan": {**wan, "capture": ["attn_k"], "attention_heads": "per_head"}}})
    assert len(heads.sources(["wan"])) == 40 and str(heads.sources(["wan"])[3]) == "wan@t500@L20.attn_k.h3"
    assert model_costs(heads)[0].bytes == plain.bytes
