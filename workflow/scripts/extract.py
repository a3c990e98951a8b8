from joblog import start_logging
from devices import claim_devices

log = start_logging(snakemake.log[0])
claim_devices(snakemake, log)  # before anything imports torch: CUDA reads CUDA_VISIBLE_DEVICES once

from extractors.job import run_extraction  # noqa: E402
from extractors.registry import ModelConfig  # noqa: E402

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
