rule dataset:
    """Render a synthetic dataset into the canonical clip store (external stores need no rule)."""
    output:
        directory(DATA),
    params:
        spec=lambda wildcards: dict(PLAN.datasets[wildcards.dataset].synthetic),
    wildcard_constraints:
        dataset=one_of(n for n, d in PLAN.datasets.items() if d.kind == "synthetic"),
    log:
        log_path("dataset", "{dataset}"),
    benchmark:
        benchmark_path("dataset", "{dataset}")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/make_dataset.py"
