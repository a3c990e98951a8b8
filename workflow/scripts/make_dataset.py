from joblog import start_logging

from clipstore.generate import write_synthetic_store
from clipstore.synthetic import SyntheticSpec

log = start_logging(snakemake.log[0])
spec = SyntheticSpec(**snakemake.params.spec)
log.info("rendering %s", spec)
write_synthetic_store(snakemake.output[0], spec)
log.info("wrote %s", snakemake.output[0])
