"""One exception type for every store problem, so callers and Snakemake print one clear line."""


class StoreError(RuntimeError):
    """A clip or feature store is missing, incomplete, or lacks what the caller needs."""


class BadClip(StoreError):
    """One clip of a dataset is unusable: a missing or corrupt file, a wrong shape or dtype, non-finite
    ground truth. The message is one line naming the file and what is wrong."""
