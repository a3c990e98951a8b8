"""The dataset rule: render the synthetic dataset, or bring a dataset in through its kind's reader."""

from joblog import start_logging

from clipstore.generate import write_synthetic_store
from clipstore.ingest import ingest
from clipstore.kinds import SYNTHETIC_OPTIONS, open_reader, store_options
from clipstore.synthetic import SyntheticSpec

log = start_logging(snakemake.log[0])
entry = snakemake.params.entry
if entry["kind"] == "synthetic":
    spec = SyntheticSpec(**{key: entry[key] for key in SYNTHETIC_OPTIONS if key in entry})
    log.info("rendering %s", spec)
    write_synthetic_store(snakemake.output[0], spec, store_options(entry))
else:
    log.info("bringing in %s dataset %s with %d threads", entry["kind"], entry["root"], snakemake.threads)
    ingest(snakemake.output[0], open_reader(entry), store_options(entry), threads=snakemake.threads, log=log)
log.info("wrote %s", snakemake.output[0])
