from joblog import start_logging

from extractors.job import run_extraction
from extractors.registry import ModelConfig

log = start_logging(snakemake.log[0])
model = ModelConfig.from_json(snakemake.params.model)
log.info("extracting %s at timesteps %s, layers %s", model.name, list(model.timesteps), model.layers)
paths = run_extraction(
    clip_store=snakemake.input.clips,
    outputs=dict(zip(model.timesteps, snakemake.output, strict=True)),
    dataset=snakemake.wildcards.dataset,
    model=model,
    shard=int(snakemake.wildcards.shard),
    clips_per_shard=snakemake.params.clips_per_shard,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
log.info("wrote %s", ", ".join(map(str, paths)))
