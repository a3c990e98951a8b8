import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Jobs import the packages from this checkout, also inside --sdm conda envs and on Slurm nodes.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, workflow.basedir)

from clipstore import StoreError
from extractors.ids import SOURCE as SOURCE_WILDCARD
from extractors.ids import TIMESTEP as TIMESTEP_WILDCARD
from workflow.planning.tiny import TINY_MODELS, TINY_ROOT
from workflow.planning import (DATA, FEATURE_INDEX, FEATURES, PROBE, WorkflowPlan, canonical, rule_token,
                               validate_config)
from workflow.planning.estimate import format_plan
from workflow.planning.resources import resource_keys
from probes.sources import spec_stores

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    PLAN = WorkflowPlan(config)
except (ValueError, StoreError) as err:
    raise WorkflowError(f"config error: {err}") from None

TABLES = {
    "headline_md": "results/tables/headline.md",
    "headline_tex": "results/tables/headline.tex",
    "headline_html": "results/tables/headline.html",
    "metrics": "results/tables/metrics.csv",
    "summary_csv": "results/tables/summary.csv",
    "summary_md": "results/tables/summary.md",
    "summary_tex": "results/tables/summary.tex",
}
PLOTS = "results/plots"


def one_of(names):
    """A wildcard pattern matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def dataset_entry(name):
    """The dataset job's parameters: its config entry without `threads` (which changes no byte written)."""
    return canonical({key: value for key, value in PLAN.datasets[name].entry.items() if key != "threads"})


def dataset_inputs(name):
    """Files whose edit must rewrite a dataset: the split lists of an ingested layout."""
    entry = PLAN.datasets[name].entry
    if entry["kind"] in ("scannet", "dl3dv"):
        return [os.path.join(entry["root"], f"{split}.json") for split in ("train", "val")]
    return [entry["split_file"]] if entry.get("split_file") else []


def rule_resources(job):
    """A job's resources (threads excepted) as a rule's ``resources:`` keywords."""
    return {key: value for key, value in job.items() if key != "threads"}


def per_job_resources(keys, job_of):
    """``resources:`` keywords for a rule whose jobs differ: each key a function of the job's wildcards
    (a key a job does not set is left out of that job)."""
    def resource(key):
        return lambda wildcards: job_of(wildcards).get(key)

    return {key: resource(key) for key in keys}


def log_path(stage, pattern):
    return f"results/logs/{stage}/{pattern}.log"


def benchmark_path(stage, pattern):
    return f"results/benchmarks/{stage}/{pattern}.tsv"


def plan_table():
    """The planning table (jobs and feature-cache size per model); a dataset that cannot be measured yet
    leaves the table out with the reason, never the run."""
    try:
        return format_plan(PLAN)
    except (StoreError, OSError, ValueError) as err:
        return f"Plan: no estimate ({err})"


def dry_run_requested():
    """Whether Snakemake was started with -n (alone or among short flags, e.g. -np) or --dry-run: Snakemake
    tells the Snakefile only after parsing, and the plan table belongs before the dry run's job list."""
    return any(arg in ("--dry-run", "--dryrun") or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", arg)
               for arg in sys.argv[1:])


def summary_message():
    """The headline tables and where everything is, printed when a run succeeds."""
    if not os.path.exists(TABLES["headline_md"]):
        return ""  # a run of other targets
    with open(TABLES["headline_md"]) as handle:
        body = handle.read()
    return (f"\n{body}\nResults table: {os.path.abspath(TABLES['headline_md'])}\n"
            f"  every metric: {TABLES['summary_md']}, tidy with intervals: {TABLES['metrics']}\n"
            f"  plots: {PLOTS}/, one page with all of it: snakemake --report report.html")
