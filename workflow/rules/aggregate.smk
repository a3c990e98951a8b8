rule aggregate:
    """Collect every probe's metrics.json into the results tables: headline tables like the paper's Table 1,
    a tidy metrics.csv with bootstrap intervals, and the wide summary of every metric."""
    input:
        PLAN.probe_dirs(),
    output:
        headline_md=TABLES["headline_md"],
        headline_tex=TABLES["headline_tex"],
        headline_html=report(TABLES["headline_html"], caption="../report/headline.rst", category="1. Tables",
                             labels={"table": "headline"}),
        metrics=report(TABLES["metrics"], caption="../report/metrics.rst", category="1. Tables",
                       labels={"table": "metrics.csv (tidy)"}),
        summary_csv=report(TABLES["summary_csv"], caption="../report/summary.rst", category="1. Tables",
                           labels={"table": "summary.csv (every metric)"}),
        summary_md=TABLES["summary_md"],
        summary_tex=TABLES["summary_tex"],
    threads: PLAN.resources.stage("aggregate")["threads"]
    resources:
        **rule_resources(PLAN.resources.stage("aggregate")),
    log:
        log_path("aggregate", "tables"),
    benchmark:
        benchmark_path("aggregate", "tables")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/aggregate.py"


rule plots:
    """Plots from metrics.csv: metrics against layer and timestep, layer x timestep heatmaps, the family
    comparison and each fusion against its branches (one folder per dataset and figure kind)."""
    input:
        TABLES["metrics"],
    output:
        report(
            directory(PLOTS),
            patterns=["{dataset}/{figure}/{name}.png"],
            caption="../report/plots.rst",
            category="2. Plots ({figure})",
            subcategory="{dataset}",
            labels={"figure": "{name}"},
        ),
    threads: PLAN.resources.stage("plots")["threads"]
    resources:
        **rule_resources(PLAN.resources.stage("plots")),
    log:
        log_path("plots", "plots"),
    benchmark:
        benchmark_path("plots", "plots")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/plots.py"
