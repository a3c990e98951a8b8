from joblog import start_logging

from probes.aggregate import aggregate

log = start_logging(snakemake.log[0])
rows = aggregate(snakemake.input, dict(snakemake.output.items()))
log.info("%d metric rows -> %s", len(rows), snakemake.output.headline_md)
