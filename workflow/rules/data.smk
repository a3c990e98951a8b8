rule dataset:
    """Write a dataset's canonical clip store: render the synthetic one, or bring in a scannet, dl3dv or video
    dataset (docs/data.md). A `clipstore` dataset is used in place and needs no rule."""
    output:
        directory(DATA),
    input:
        lambda wildcards: dataset_inputs(wildcards.dataset),
    params:
        entry=lambda wildcards: dataset_entry(wildcards.dataset),
    threads: lambda wildcards: PLAN.dataset_resources(wildcards.dataset)["threads"]
    resources:
        **per_job_resources(resource_keys([PLAN.dataset_resources(d) for d in PLAN.datasets]),
                            lambda wildcards: PLAN.dataset_resources(wildcards.dataset)),
    wildcard_constraints:
        dataset=one_of(n for n, d in PLAN.datasets.items() if d.kind != "clipstore"),
    log:
        log_path("dataset", "{dataset}"),
    benchmark:
        benchmark_path("dataset", "{dataset}")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/make_dataset.py"
