"""Planning: from a config to the workflow's jobs (datasets, models, sources, probes, resources), computed once
when Snakemake parses the Snakefile. It imports no torch, PIL or scikit-learn: planning a paper-scale grid
stays fast, and a config mistake fails before any job runs, with one message naming the culprit."""

from workflow.planning.config import (DATA, FEATURE_INDEX, FEATURES, PROBE, PlanError, canonical, rule_token,
                                      validate_config)
from workflow.planning.plan import WorkflowPlan

__all__ = ["DATA", "FEATURES", "FEATURE_INDEX", "PROBE", "PlanError", "WorkflowPlan", "canonical", "rule_token",
           "validate_config"]
