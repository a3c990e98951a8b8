from joblog import start_logging

from probes.job import run_probe
from probes.uncertainty import BootstrapSettings

log = start_logging(snakemake.log[0])
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
