from joblog import start_logging

from probes.aggregate import aggregate

log = start_logging(snakemake.log[0])
rows = aggregate(snakemake.input, csv_path=snakemake.output.csv, md_path=snakemake.output.md,
                 tex_path=snakemake.output.tex, plot_path=snakemake.output.plot)
log.info("%d rows -> %s", len(rows), snakemake.output.md)
