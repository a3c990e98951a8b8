rule probe:
    """Train and evaluate one probe kind of one task on one feature source (a cached array or a fusion)."""
    input:
        unpack(lambda wildcards: PLAN.probe_inputs(wildcards.dataset, wildcards.source)),
    output:
        directory(PROBE),
    params:
        source=lambda wildcards: canonical(PLAN.source_spec(wildcards.dataset, wildcards.source)),
        settings=lambda wildcards: canonical(PLAN.tasks[wildcards.task].probes[wildcards.probe]),
        task_options=lambda wildcards: canonical(PLAN.tasks[wildcards.task].options),
        seed=PLAN.seed,
        bootstrap=canonical(asdict(PLAN.bootstrap)),
    wildcard_constraints:
        dataset=one_of(PLAN.datasets),
        task=one_of(PLAN.tasks),
        source=SOURCE_WILDCARD,
        probe=r"[^/]+",
    threads: lambda wildcards: PLAN.probe_resources(wildcards.task, wildcards.probe)["threads"]
    # One group per probe kind: a cluster profile may run many of a kind in one Slurm job
    # (group-components: {probes-linear: 10}); local runs ignore groups. A function, not "probes-{probe}":
    # Snakemake looks a wildcard group's group-components up under its unresolved name.
    group:
        lambda wildcards: f"probes-{wildcards.probe}"
    resources:
        # One slot per probe job: profiles/slurm allows one per group job (the plugin runs a group's members
        # one after another), so a group asks for its largest member, not the sum of all of them.
        group_slot=1,
        **per_job_resources(PLAN.probe_resource_keys(),
                            lambda wildcards: PLAN.probe_resources(wildcards.task, wildcards.probe)),
    log:
        log_path("probe", "{dataset}/{task}/{source}/{probe}"),
    benchmark:
        benchmark_path("probe", "{dataset}/{task}/{source}/{probe}")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/probe.py"
