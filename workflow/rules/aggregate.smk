rule aggregate:
    """Collect every probe's metrics.json into the summary tables and plot."""
    input:
        PLAN.probe_dirs(),
    output:
        csv=report(SUMMARY["csv"], caption="../report/summary.rst", category="Results"),
        md=SUMMARY["md"],
        tex=SUMMARY["tex"],
        plot=report(SUMMARY["plot"], caption="../report/plot.rst", category="Results"),
    log:
        log_path("aggregate", "summary"),
    benchmark:
        benchmark_path("aggregate", "summary")
    conda:
        "../../envs/probe.yaml"
    script:
        "../scripts/aggregate.py"
