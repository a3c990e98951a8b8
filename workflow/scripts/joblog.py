"""Logging for Snakemake script jobs: to the rule's ``log:`` file and to stderr, errors included."""

import logging
import sys
import traceback


def start_logging(log_path: str) -> logging.Logger:
    """Send log records (and an uncaught exception's traceback) to ``log_path`` and stderr."""
    handlers = [logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)

    def log_uncaught(kind, value, tb):
        from clipstore.errors import StoreError

        if issubclass(kind, StoreError):  # bad data or a bad store: the message names it; no traceback
            logging.getLogger("job").error("%s", value)
            return
        logging.getLogger("job").error("".join(traceback.format_exception(kind, value, tb)).rstrip())

    sys.excepthook = log_uncaught
    return logging.getLogger("job")
