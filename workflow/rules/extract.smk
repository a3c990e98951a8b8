# One extraction rule per model (generated below), so that one job -- one (dataset, model, shard of clips)
# -- loads the model once and writes its store at every timestep: results/features/{dataset}/{model}/
# {timestep}/shard-{k}.zarr. Params hold only the model's own settings: probe, fusion and aggregation
# settings never re-run extraction.


def extraction_rule_name(model):
    return "extract_" + rule_token(model)


for _model in PLAN.models.values():

    rule:
        name:
            extraction_rule_name(_model.name)
        input:
            clips=lambda wildcards: PLAN.datasets[wildcards.dataset].store,
            checkpoint=PLAN.checkpoint_inputs(_model.name),
        output:
            [
                directory(FEATURES.format(dataset="{dataset}", model=_model.name, timestep=token, shard="{shard}"))
                for token in _model.timestep_tokens
            ],
        params:
            model=canonical(_model.to_json()),
            clips_per_shard=PLAN.clips_per_shard,
            seed=PLAN.seed,
        wildcard_constraints:
            dataset=one_of(PLAN.datasets),
            shard=r"\d+",
        threads: PLAN.extraction_resources(_model.name)["threads"]
        resources:
            **rule_resources(PLAN.extraction_resources(_model.name)),
        log:
            log_path("extract", f"{{dataset}}/{_model.name}/shard-{{shard}}"),
        benchmark:
            benchmark_path("extract", f"{{dataset}}/{_model.name}/shard-{{shard}}")
        conda:
            "../../envs/extract.yaml"
        script:
            "../scripts/extract.py"


rule feature_index:
    """List one cached array's shards, one path per line, once all of them are written (results/features/
    {dataset}/{model}/{timestep}/shards.txt): a probe job depends on this one file rather than on every
    shard, which keeps a paper-scale DAG small. A one-line shell command on the submitting host: no Python
    start-up, no Snakefile parse, no scheduler round-trip."""
    localrule: True
    input:
        lambda wildcards: PLAN.shard_paths(wildcards.dataset, wildcards.model, wildcards.timestep),
    output:
        FEATURE_INDEX,
    wildcard_constraints:
        dataset=one_of(PLAN.datasets),
        model=one_of(PLAN.indexed_arrays()),
        timestep=TIMESTEP_WILDCARD,
    log:
        log_path("feature_index", "{dataset}/{model}/{timestep}"),
    benchmark:
        benchmark_path("feature_index", "{dataset}/{model}/{timestep}")
    shell:
        "printf '%s\\n' {input:q} > {output:q} 2> {log:q}"
