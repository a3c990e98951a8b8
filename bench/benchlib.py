"""What the bench scripts share: timing, the median, core count, ``--resolution`` parsing, plain tables,
and cold-cache reads (page-cache eviction, bytes read from the device).

Imported by the scripts as ``benchlib`` (``python bench/X.py`` puts ``bench/`` on ``sys.path``). It imports
no torch: :func:`sync` synchronises CUDA only when the calling script has already imported torch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """diffusers' logging at error level for the block (its cast warnings are handled by the caller)."""
    import diffusers

    level = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(level)


def cast_like_from_pretrained(model: Any, dtype: Any) -> Any:
    """``model.to(dtype)`` but with the parameters and buffers ``from_pretrained(torch_dtype=dtype)`` keeps
    in float32 (the class's ``_keep_in_fp32_modules``; RoPE tables), as extraction jobs load them."""
    with quiet_diffusers():  # the "should be kept in float32" warning: done just below
        model.to(dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, param in model.named_parameters():
        if any(k in name.split(".") for k in keep):
            param.data = param.data.float()
    for name, buffer in model.named_buffers():
        if any(k in name.split(".") for k in keep) and buffer.is_floating_point():
            buffer.data = buffer.data.float()
    return model


def sync() -> None:
    """Wait for queued CUDA work, so that wall clocks cover it (a no-op without torch or CUDA)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, synchronised on CUDA."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def med(values: list[float]) -> float:
    return statistics.median(values)


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_resolution(text: str) -> tuple[int, int]:
    """``--resolution HxW`` (or ``H,W``) as (height, width)."""
    try:
        parts = [int(x) for x in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--resolution {text!r}: expected HxW, e.g. 224x224") from None
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--resolution {text!r}: expected two positive integers HxW")
    return parts[0], parts[1]


def print_table(header: list[str], rows: list[list[str]], align: str) -> None:
    """A plain-text table; ``align`` has one letter per column, ``l`` left, anything else right."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def kernel_read_bytes() -> int | None:
    """Bytes this process (all threads) caused to be fetched from the block device, or None if unknown."""
    try:
        with open("/proc/self/io") as handle:
            for line in handle:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def evict(path: Path) -> None:
    """Flush and drop the page cache of every file under ``path`` (only these files)."""
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def find_snakemake() -> str:
    """The snakemake next to this Python (the project's venv), else the one on PATH."""
    local = Path(sys.executable).parent / "snakemake"
    if local.exists():
        return str(local)
    found = shutil.which("snakemake")
    if not found:
        sys.exit("snakemake not found next to this Python or on PATH")
    return found
