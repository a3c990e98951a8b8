rule probe:
    """Train and evaluate one probe kind of one task on one cached feature source."""
    input:
        unpack(lambda wildcards: PLAN.probe_inputs(wildcards.dataset, wildcards.source)),
    output:
        directory(PROBE),
    params:
        settings=lambda wildcards: dict(PLAN.tasks[wildcards.task].probes[wildcards.probe]),
        task_options=lambda wildcards: dict(PLAN.tasks[wildcards.task].options),
        seed=PLAN.seed,
    wildcard_constraints:
        dataset=one_of(PLAN.datasets),
        task=one_of(PLAN.tasks),
        source=r"[^/@]+@(none|t\d+)@L\d+",
        probe=r"[^/]+",
    threads: 1
    log:
        log_path("probe", "{dataset}/{task}/{source}/{probe}"),
    benchmark:
        benchmark_path("probe", "{dataset}/{task}/{source}/{probe}")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/probe.py"
