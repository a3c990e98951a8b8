from joblog import start_logging

from extractors.tiny_models import build_tiny_model

log = start_logging(snakemake.log[0])
path = build_tiny_model(snakemake.wildcards.tiny, snakemake.output[0], seed=snakemake.params.seed)
log.info("wrote random-init %s to %s", snakemake.wildcards.tiny, path)
