rule plan:
    """Print what this config will cost before anything runs: per model and in total, the jobs and the
    estimated feature-cache size (docs/configuration.md#planning). `snakemake -n` prints the same table."""
    localrule: True
    log:
        log_path("plan", "plan"),
    run:
        table = plan_table()
        print(table)
        Path(log[0]).write_text(table + "\n")
