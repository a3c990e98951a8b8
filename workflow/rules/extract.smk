rule extract:
    """Run one frozen model on one shard of clips; write every requested layer at one timestep."""
    input:
        clips=lambda wildcards: PLAN.datasets[wildcards.dataset].store,
        checkpoint=lambda wildcards: PLAN.checkpoint_inputs(wildcards.model),
    output:
        directory(FEATURES),
    params:
        # Only the model's own settings: probe, fusion and aggregation settings never re-run extraction.
        model=lambda wildcards: PLAN.model(wildcards.model).to_json(),
        timestep=lambda wildcards: PLAN.timestep(wildcards.model, wildcards.timestep),
        clips_per_shard=PLAN.clips_per_shard,
        seed=PLAN.seed,
    wildcard_constraints:
        dataset=one_of(PLAN.datasets),
        model=one_of(PLAN.models),
        timestep=r"none|t\d+",
        shard=r"\d+",
    resources:
        gpu=lambda wildcards: 0 if PLAN.model(wildcards.model).paradigm == "baseline" else 1,
    log:
        log_path("extract", "{dataset}/{model}/{timestep}/shard-{shard}"),
    benchmark:
        benchmark_path("extract", "{dataset}/{model}/{timestep}/shard-{shard}")
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/extract.py"
