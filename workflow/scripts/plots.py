from joblog import start_logging

from probes.plots import read_metrics_csv, write_plots
from probes.tasks import TASKS

log = start_logging(snakemake.log[0])
paths = write_plots(read_metrics_csv(snakemake.input[0]), snakemake.output[0],
                    headline={name: task.headline for name, task in TASKS.items()},
                    higher_is_better={m: up for task in TASKS.values() for m, up in task.metrics.items()})
log.info("%d plots in %s", len(paths), snakemake.output[0])
