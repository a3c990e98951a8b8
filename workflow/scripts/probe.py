from joblog import start_logging
from devices import claim_devices

log = start_logging(snakemake.log[0])
claim_devices(snakemake, log)  # before anything imports torch: CUDA reads CUDA_VISIBLE_DEVICES once

from probes.job import run_probe  # noqa: E402
from probes.uncertainty import BootstrapSettings  # noqa: E402

record = run_probe(
    dataset=snakemake.wildcards.dataset,
    clip_store=snakemake.input.clip_store,
    source=dict(snakemake.params.source),
    task=snakemake.wildcards.task,
    probe=snakemake.wildcards.probe,
    settings=dict(snakemake.params.settings),
    task_options=dict(snakemake.params.task_options),
    seed=snakemake.params.seed,
    out_dir=snakemake.output[0],
    threads=snakemake.threads,
    bootstrap=BootstrapSettings(**snakemake.params.bootstrap),
)
log.info("%s", record["metrics"])
