rule fuse:
    """Materialise a fusion (`materialise: true`) for one shard of clips as a standard feature store, from
    the branches' cached stores of that shard; probes then read it like any extracted array."""
    input:
        lambda wildcards: spec_stores(PLAN.fusion_spec(wildcards.dataset, wildcards.fusion, int(wildcards.shard))),
    output:
        directory(FEATURES.format(dataset="{dataset}", model="{fusion}", timestep="none", shard="{shard}")),
    params:
        source=lambda wildcards: canonical(PLAN.fusion_spec(wildcards.dataset, wildcards.fusion, int(wildcards.shard))),
        clip_index=lambda wildcards: PLAN.shard_clip_index(wildcards.dataset, int(wildcards.shard)),
    wildcard_constraints:
        dataset=one_of(PLAN.datasets),
        fusion=one_of(PLAN.materialised_fusions),
        shard=r"\d+",
    threads: PLAN.resources.stage("fuse")["threads"]
    resources:
        **rule_resources(PLAN.resources.stage("fuse")),
    log:
        log_path("fuse", "{dataset}/{fusion}/shard-{shard}"),
    benchmark:
        benchmark_path("fuse", "{dataset}/{fusion}/shard-{shard}")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/fuse.py"
