"""Which GPUs a job may use, so that concurrent GPU jobs on one machine never share a device.

Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once, but never says which device a job
should use: without this every job lands on device 0. A job script calls :func:`claim_devices` first thing,
before anything imports torch, because CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when it starts.

A claim is an exclusive ``flock`` on one lock file per device under ``.snakemake/gpu-slots/`` of the
working directory. The OS drops the lock when the job's process ends, however it ends, so a killed job
never leaks a device, and the claim holds even when ``--resources gpu=N`` was forgotten.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

SLOTS_DIR = Path(".snakemake/gpu-slots")
POLL_SECONDS = 0.5
VARIABLE = "CUDA_VISIBLE_DEVICES"

# The lock file descriptors of this process's claim. They must stay open for the job's lifetime: closing
# one releases its device.
_HELD: list[int] = []


class DeviceError(RuntimeError):
    """A job asks for more GPUs than the device list holds."""


def requested_gpus(job: Any) -> int:
    """The job's ``gpu`` resource (0 when the rule declares none)."""
    return int(getattr(job.resources, "gpu", 0) or 0)


def device_list(configured: Iterable[Any] | None, environ: MutableMapping[str, str]) -> tuple[list[str] | None, str]:
    """(device ids or None when no GPU is known, where they come from).

    Sources in order: the config's ``gpu_devices``, the ``CUDA_VISIBLE_DEVICES`` Snakemake was started with,
    the GPUs ``nvidia-smi -L`` lists.
    """
    if configured is not None:
        return _unique(str(d).strip() for d in configured), "the config's gpu_devices"
    if VARIABLE in environ:
        return _unique(environ[VARIABLE].split(",")), f"{VARIABLE} of the Snakemake run"
    count = _nvidia_smi_gpus(environ)
    return (None if count is None else [str(i) for i in range(count)]), "nvidia-smi -L"


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in ids if i.strip()))


def _nvidia_smi_gpus(environ: MutableMapping[str, str]) -> int | None:
    """How many GPUs ``nvidia-smi -L`` lists, or None without the tool or a working driver."""
    tool = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if tool is None:
        return None
    try:
        listed = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # MIG devices are listed indented under their GPU; only whole GPUs count here
    return len(re.findall(r"^GPU \d+:", listed, flags=re.M)) or None


def _lock_name(device: str) -> str:
    """A file name per device id; ids that are not plain (MIG or GPU UUIDs with odd characters) are hashed."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", device):
        return f"{device}.lock"
    return f"id-{hashlib.sha1(device.encode()).hexdigest()[:16]}.lock"


def _try_claim(devices: list[str], count: int, slots: Path, owner: str) -> list[str] | None:
    """Lock ``count`` free devices, or none at all."""
    taken: dict[str, int] = {}
    for device in devices:
        fd = os.open(slots / _lock_name(device), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        taken[device] = fd
        if len(taken) == count:
            break
    if len(taken) < count:
        # Holding some devices while waiting for more would deadlock two multi-GPU jobs.
        for fd in taken.values():
            os.close(fd)
        return None
    for fd in taken.values():
        os.ftruncate(fd, 0)
        os.write(fd, f"{owner}\n".encode())  # for the waiting message of other jobs
        _HELD.append(fd)
    return list(taken)


def _holders(devices: list[str], slots: Path) -> str:
    parts = []
    for device in devices:
        try:
            owner = (slots / _lock_name(device)).read_text().strip()
        except OSError:
            owner = ""
        parts.append(f"{device} ({owner or 'claimed'})")
    return ", ".join(parts)


def claim(devices: list[str], count: int, slots: Path, owner: str, log: logging.Logger,
          poll: float = POLL_SECONDS) -> list[str]:
    """Claim ``count`` distinct devices of ``devices`` for this process, waiting until enough are free."""
    slots.mkdir(parents=True, exist_ok=True)
    waiting = False
    while (taken := _try_claim(devices, count, slots, owner)) is None:
        if not waiting:
            log.info("waiting for a free GPU: %s needs %d; claimed: %s", owner, count, _holders(devices, slots))
            waiting = True
        time.sleep(poll)
    return taken


def release() -> None:
    """Give this process's devices back (a job need not call it: its devices are freed when it exits)."""
    while _HELD:
        os.close(_HELD.pop())


def _check_cuda_not_started() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("claim_devices must run before CUDA starts: it only sets CUDA_VISIBLE_DEVICES")


def claim_devices(job: Any, log: logging.Logger, environ: MutableMapping[str, str] | None = None,
                  slots: Path = SLOTS_DIR, poll: float = POLL_SECONDS) -> list[str] | None:
    """Give this job its own GPUs through ``CUDA_VISIBLE_DEVICES``; call it before anything imports torch.

    ``job`` is the script's ``snakemake`` object (its ``resources.gpu``, ``config`` and ``rule``). Returns
    the ids claimed, [] when the job sees no GPU, or None when the variable is left as it was (under Slurm,
    or when no GPU is known).
    """
    environ = os.environ if environ is None else environ
    _check_cuda_not_started()
    if environ.get("SLURM_JOB_ID"):  # Slurm gave the job its GPUs, by --gpus or by a gres with gpu: 0
        log.info("GPU slot: Slurm's (job %s): %s=%s", environ["SLURM_JOB_ID"], VARIABLE, environ.get(VARIABLE, "unset"))
        return None
    count = requested_gpus(job)
    if count <= 0:
        environ[VARIABLE] = ""  # a job that declares no GPU never grabs one
        log.info("GPU slot: none (gpu=0): %s=''", VARIABLE)
        return []
    devices, origin = device_list(job.config.get("gpu_devices"), environ)
    if devices is None:
        log.info("GPU slot: no GPU known (no gpu_devices in the config, no %s, no nvidia-smi): %s left %s",
                 VARIABLE, VARIABLE, repr(environ[VARIABLE]) if VARIABLE in environ else "unset")
        return None
    if not devices:
        environ[VARIABLE] = ""
        log.info("GPU slot: none, %s lists no GPU: %s=''", origin, VARIABLE)
        return []
    if count > len(devices):
        raise DeviceError(f"rule {job.rule} asks for gpu={count}, but {origin} lists {len(devices)} "
                          f"device{'s' if len(devices) > 1 else ''}: [{', '.join(devices)}]")
    taken = claim(devices, count, slots, owner=f"rule {job.rule}, pid {os.getpid()}", log=log, poll=poll)
    environ[VARIABLE] = ",".join(taken)
    log.info("GPU slot: %s=%s", VARIABLE, environ[VARIABLE])
    return taken
