from joblog import start_logging
from devices import claim_devices

log = start_logging(snakemake.log[0])
claim_devices(snakemake, log)  # before anything imports torch: CUDA reads CUDA_VISIBLE_DEVICES once

from extractors.tiny_models import build_tiny_model  # noqa: E402

path = build_tiny_model(snakemake.wildcards.tiny, snakemake.output[0], seed=snakemake.params.seed)
log.info("wrote random-init %s to %s", snakemake.wildcards.tiny, path)
