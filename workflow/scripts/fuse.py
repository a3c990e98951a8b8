from joblog import start_logging
from devices import claim_devices

log = start_logging(snakemake.log[0])
claim_devices(snakemake, log)  # before anything imports torch: CUDA reads CUDA_VISIBLE_DEVICES once

from probes.fusion import write_fused_store  # noqa: E402
from probes.sources import open_source  # noqa: E402

source = open_source(snakemake.params.source)
log.info("fusing %s from %s (%s) onto a %s grid", source.id, [str(b.id) for b in source.branches],
         source.fusion.mode, list(source.grid))
path = write_fused_store(source, snakemake.output[0], clip_index=snakemake.params.clip_index,
                         dataset=snakemake.wildcards.dataset)
log.info("wrote %s", path)
