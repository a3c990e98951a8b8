"""Logging for Snakemake script jobs: to the rule's ``log:`` file and to stderr, errors included."""

import logging
import sys
import traceback


# Errors that report a user's data, store or setting in one line naming it: logged without a traceback.
USER_ERRORS = ("clipstore.errors:StoreError", "probes.sampler:SamplerError", "extractors.base:OptionError",
               "extractors.checkpoints:CheckpointError", "probes.fusion:FusionError", "devices:DeviceError")


def user_errors() -> tuple[type, ...]:
    """The classes of :data:`USER_ERRORS` that this job imported (an error cannot be of another one)."""
    found = []
    for spec in USER_ERRORS:
        module, name = spec.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def start_logging(log_path: str) -> logging.Logger:
    """Send log records (and an uncaught exception's traceback) to ``log_path`` and stderr."""
    handlers = [logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)

    def log_uncaught(kind, value, tb):
        if issubclass(kind, user_errors()):  # bad data, a bad store or setting: the message names it
            logging.getLogger("job").error("%s: %s", kind.__name__, value)
            return
        logging.getLogger("job").error("".join(traceback.format_exception(kind, value, tb)).rstrip())

    sys.excepthook = log_uncaught
    return logging.getLogger("job")
