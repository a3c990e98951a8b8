rule tiny_model:
    """Write a tiny random-initialised pipeline (demo and tests) with save_pretrained."""
    output:
        directory(f"{TINY_ROOT}/{{tiny}}"),
    params:
        seed=PLAN.seed,
    wildcard_constraints:
        tiny=one_of(TINY_MODELS),
    threads: PLAN.resources.stage("tiny_model")["threads"]
    resources:
        **rule_resources(PLAN.resources.stage("tiny_model")),
    log:
        log_path("tiny_model", "{tiny}"),
    benchmark:
        benchmark_path("tiny_model", "{tiny}")
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/build_tiny_model.py"
