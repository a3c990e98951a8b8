import os
import re
import sys

from snakemake.exceptions import WorkflowError

# Jobs import the packages from this checkout, also inside --sdm conda envs and on Slurm nodes.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, workflow.basedir)

from clipstore import StoreError
from extractors.tiny_models import TINY_MODELS, TINY_ROOT
from probes.plan import DATA, FEATURES, PROBE, WorkflowPlan, validate_config

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    PLAN = WorkflowPlan(config)
except (ValueError, StoreError) as err:
    raise WorkflowError(f"config error: {err}") from None

SUMMARY = {
    "csv": "results/tables/summary.csv",
    "md": "results/tables/summary.md",
    "tex": "results/tables/summary.tex",
    "plot": "results/plots/summary.png",
}


def one_of(names):
    """A wildcard pattern matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def log_path(stage, pattern):
    return f"results/logs/{stage}/{pattern}.log"


def benchmark_path(stage, pattern):
    return f"results/benchmarks/{stage}/{pattern}.tsv"


def summary_message():
    table = os.path.abspath(SUMMARY["md"])
    with open(SUMMARY["md"]) as handle:
        body = handle.read()
    return f"\n{body}\nResults table: {table}\n             (also {SUMMARY['csv']}, plot {SUMMARY['plot']})"
