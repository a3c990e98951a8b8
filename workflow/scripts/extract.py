from joblog import start_logging

from extractors.job import run_extraction
from extractors.registry import ModelConfig

log = start_logging(snakemake.log[0])
model = ModelConfig.from_json(snakemake.params.model)
log.info("extracting %s at timestep %s, layers %s", model.name, snakemake.params.timestep, model.layers)
path = run_extraction(
    clip_store=snakemake.input.clips,
    output=snakemake.output[0],
    dataset=snakemake.wildcards.dataset,
    model=model,
    timestep=snakemake.params.timestep,
    shard=int(snakemake.wildcards.shard),
    clips_per_shard=snakemake.params.clips_per_shard,
    seed=snakemake.params.seed,
)
log.info("wrote %s", path)
