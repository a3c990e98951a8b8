"""One exception type for every store problem, so callers and Snakemake print one clear line."""


class StoreError(RuntimeError):
    """A clip or feature store is missing, incomplete, or lacks what the caller needs."""
