"""Each concurrent GPU job gets its own devices (workflow/scripts/devices.py), on the CPU with fake ids: claims
never overlap on an id, a claimant waits while all are taken, a killed job's device is free again; gpu=0
hides the GPUs, Slurm's assignment is left alone; and through Snakemake, --resources gpu=N."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO

SCRIPTS = REPO / "workflow/scripts"


def _load_devices():
    """workflow/scripts/devices.py as the job scripts import it (without putting every script on sys.path)."""
    spec = importlib.util.spec_from_file_location("devices", SCRIPTS / "devices.py")
    module = sys.modules.setdefault("devices", importlib.util.module_from_spec(spec))
    if not hasattr(module, "claim_devices"):
        spec.loader.exec_module(module)
    return module


devices = _load_devices()
DeviceError, claim_devices, device_list = devices.DeviceError, devices.claim_devices, devices.device_list

# A claimant process: claims, says so, holds its devices for `hold` seconds, says it is done, exits.
CLAIMANT = """
import json, logging, sys, time
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from devices import claim_devices
logging.basicConfig(level=logging.INFO, format="%(message)s")
gpu, hold, ids = int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
job = SimpleNamespace(resources=SimpleNamespace(gpu=gpu), config={"gpu_devices": ids}, rule="probe")
taken = claim_devices(job, logging.getLogger("job"), poll=0.02)
start = time.time()
print(json.dumps({"event": "claimed", "ids": taken, "time": start}), flush=True)
time.sleep(hold)
print(json.dumps({"event": "done", "ids": taken, "start": start, "end": time.time()}), flush=True)
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}


def _claimant(workdir: Path, hold: float, ids=("7", "9"), gpu: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIMANT, str(SCRIPTS), str(gpu), str(hold), json.dumps(list(ids))],
                            cwd=workdir, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_claimed(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()
    assert line, process.stderr.read()
    return json.loads(line)


def _finish(process: subprocess.Popen) -> tuple[dict, str]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1]), err


def _job(gpu: int | None, devices_=None, rule: str = "extract_wan") -> SimpleNamespace:
    resources = SimpleNamespace() if gpu is None else SimpleNamespace(gpu=gpu)
    config = {} if devices_ is None else {"gpu_devices": devices_}
    return SimpleNamespace(resources=resources, config=config, rule=rule)


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO)
    return logging.getLogger("job")


@pytest.fixture(autouse=True)
def _release_claims():
    yield
    devices.release()  # claims made in this test process


def _no_overlap_shares_an_id(intervals: list[tuple[str, float, float]]) -> None:
    for (id_a, start_a, end_a), (id_b, start_b, end_b) in combinations(intervals, 2):
        if start_a < end_b and start_b < end_a:
            assert id_a != id_b, (id_a, start_a, end_a, start_b, end_b)


def test_concurrent_claimants_never_share_a_device(tmp_path: Path) -> None:
    processes = [_claimant(tmp_path, hold=0.3) for _ in range(6)]
    records = [_finish(p)[0] for p in processes]
    intervals = [(i, r["start"], r["end"]) for r in records for i in r["ids"]]
    assert {i for i, _, _ in intervals} == {"7", "9"}
    _no_overlap_shares_an_id(intervals)
    # two devices, six jobs of 0.3 s: at least three rounds
    assert max(e for _, _, e in intervals) - min(s for _, s, _ in intervals) >= 0.85


def test_a_third_claimant_waits_until_one_finishes(tmp_path: Path) -> None:
    first, second = _claimant(tmp_path, hold=1.0), _claimant(tmp_path, hold=3.0)
    claimed = {_wait_claimed(first)["ids"][0], _wait_claimed(second)["ids"][0]}
    assert claimed == {"7", "9"}
    third = _claimant(tmp_path, hold=0.0)
    done_first, _ = _finish(first)
    done_third, err = _finish(third)
    _finish(second)
    assert done_third["start"] > done_first["end"] and done_third["ids"] == done_first["ids"]
    assert err.count("waiting for a free GPU") == 1, err  # said once, however long it waits
    assert "rule probe, pid" in err  # and who holds the devices
    assert f"GPU slot: CUDA_VISIBLE_DEVICES={done_third['ids'][0]}" in err


def test_a_killed_claimants_device_is_free_again(tmp_path: Path, log, caplog, monkeypatch) -> None:
    holder = _claimant(tmp_path, hold=600, ids=["7"])
    assert _wait_claimed(holder)["ids"] == ["7"]
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    monkeypatch.chdir(tmp_path)
    environ: dict[str, str] = {}
    began = time.monotonic()
    assert claim_devices(_job(1, ["7"]), log, environ=environ) == ["7"]
    assert time.monotonic() - began < 1 and "waiting" not in caplog.text
    assert environ == {"CUDA_VISIBLE_DEVICES": "7"}


def test_a_job_takes_as_many_distinct_ids_as_it_asks_for(tmp_path: Path, log, caplog) -> None:
    environ: dict[str, str] = {}
    assert claim_devices(_job(2, ["7", 9, "11"]), log, environ=environ, slots=tmp_path) == ["7", "9"]
    assert environ["CUDA_VISIBLE_DEVICES"] == "7,9"
    assert "GPU slot: CUDA_VISIBLE_DEVICES=7,9" in caplog.text
    assert claim_devices(_job(1, ["7", 9, "11"]), log, environ=environ, slots=tmp_path) == ["11"]


@pytest.mark.parametrize("gpu", [0, None])
def test_jobs_without_a_gpu_see_none(tmp_path: Path, log, caplog, gpu) -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert claim_devices(_job(gpu, ["7", "9"]), log, environ=environ, slots=tmp_path) == []
    assert environ == {"CUDA_VISIBLE_DEVICES": ""} and not any(tmp_path.iterdir())
    assert "GPU slot: none (gpu=0)" in caplog.text


@pytest.mark.parametrize("gpu", [1, 0])  # gpu: 0 with gres: "gpu:1" is the recipe for --gres-only clusters
def test_slurm_assigns_devices_itself(tmp_path: Path, log, caplog, gpu) -> None:
    environ = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"}
    assert claim_devices(_job(gpu, ["7", "9"]), log, environ=environ, slots=tmp_path) is None
    assert environ == {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"} and not any(tmp_path.iterdir())
    assert "GPU slot: Slurm's (job 42): CUDA_VISIBLE_DEVICES=3" in caplog.text


def test_asking_for_more_gpus_than_listed_is_an_error(tmp_path: Path, log) -> None:
    message = "rule extract_wan asks for gpu=3, but the config's gpu_devices lists 2 devices: [7, 9]"
    with pytest.raises(DeviceError, match=re.escape(message)):
        claim_devices(_job(3, ["7", "9"]), log, environ={}, slots=tmp_path)
    message = "rule extract_wan asks for gpu=2, but CUDA_VISIBLE_DEVICES of the Snakemake run lists 1 device: [4]"
    with pytest.raises(DeviceError, match=re.escape(message)):
        claim_devices(_job(2), log, environ={"CUDA_VISIBLE_DEVICES": "4"}, slots=tmp_path)


def _fake_nvidia_smi(folder: Path, listing: str) -> str:
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}\nEOF\n")
    tool.chmod(0o755)
    return str(folder)


def test_device_list_comes_from_the_config_then_the_environment_then_nvidia_smi(tmp_path: Path) -> None:
    listing = ("GPU 0: NVIDIA H100 (UUID: GPU-aa)\n  MIG 3g.40gb Device 0: (UUID: MIG-bb)\n"
               "GPU 1: NVIDIA H100 (UUID: GPU-cc)")
    path = _fake_nvidia_smi(tmp_path / "bin", listing)
    assert device_list([7, "9"], {"CUDA_VISIBLE_DEVICES": "0", "PATH": path}) == (
        ["7", "9"], "the config's gpu_devices")
    assert device_list(None, {"CUDA_VISIBLE_DEVICES": "2, 3", "PATH": path}) == (
        ["2", "3"], "CUDA_VISIBLE_DEVICES of the Snakemake run")
    assert device_list(None, {"PATH": path}) == (["0", "1"], "nvidia-smi -L")
    assert device_list(None, {"PATH": str(tmp_path / "nowhere")})[0] is None


def test_no_known_gpu_leaves_the_variable_alone_and_says_so(tmp_path: Path, log, caplog) -> None:
    environ = {"PATH": str(tmp_path / "nowhere")}
    assert claim_devices(_job(1), log, environ=environ, slots=tmp_path / "slots") is None
    assert "CUDA_VISIBLE_DEVICES" not in environ and "GPU slot: no GPU known" in caplog.text
    environ = {"CUDA_VISIBLE_DEVICES": "", "PATH": str(tmp_path / "nowhere")}  # GPUs hidden on purpose
    assert claim_devices(_job(1), log, environ=environ, slots=tmp_path / "slots") == []
    assert environ["CUDA_VISIBLE_DEVICES"] == ""


def test_uuid_and_mig_ids_get_their_own_lock_files(tmp_path: Path, log) -> None:
    ids = ["MIG-GPU-5c89852c/1/0", "MIG-GPU-5c89852c/2/0", "GPU-0a1b"]
    environ: dict[str, str] = {}
    assert claim_devices(_job(3, ids), log, environ=environ, slots=tmp_path) == ids
    assert len(list(tmp_path.iterdir())) == 3 and all(p.parent == tmp_path for p in tmp_path.iterdir())


@pytest.mark.parametrize("script", ["extract.py", "probe.py", "fuse.py", "build_tiny_model.py"])
def test_job_scripts_claim_devices_before_importing_the_project(script: str) -> None:
    lines = (SCRIPTS / script).read_text().splitlines()
    claim = lines.index("claim_devices(snakemake, log)  # before anything imports torch: CUDA reads "
                        "CUDA_VISIBLE_DEVICES once")
    first_import = min(i for i, line in enumerate(lines) if re.match(r"from (extractors|probes|clipstore)\b", line))
    assert claim < first_import


# ---- through Snakemake: two cheap pixel extraction jobs made to declare gpu=1 ----

def _gpu_config() -> dict:
    from tests.test_workflow import SMALL_CONFIG
    config = copy.deepcopy(SMALL_CONFIG)
    config["models"] = {"pixels": config["models"]["pixels"]}
    config["fusions"] = {}
    config["gpu_devices"] = ["7", "9"]
    return config


def _stamp(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _slot_intervals(workdir: Path) -> list[tuple[str, float, float]]:
    """(ids, time of the claim, time of the last line) of each pixels extraction job's log."""
    intervals = []
    for shard in (0, 1):
        lines = (workdir / f"results/logs/extract/tiny/pixels/shard-{shard}.log").read_text().splitlines()
        slot = next(line for line in lines if "GPU slot: CUDA_VISIBLE_DEVICES=" in line)
        intervals.append((slot.rsplit("=", 1)[1], _stamp(slot), _stamp(lines[-1])))
    return intervals


@pytest.mark.e2e
def test_snakemake_gives_concurrent_gpu_jobs_their_own_device(tmp_path: Path) -> None:
    from tests.test_workflow import snakemake
    targets = [f"results/features/tiny/pixels/none/shard-{k}.zarr" for k in (0, 1)]
    # --set-resources stands in for a rule that declares gpu=1: pixels extraction is the cheapest job; one
    # thread each, so that --cores 2 runs both at once
    gpu_jobs = ("--set-resources", "extract_pixels:gpu=1", "--set-threads", "extract_pixels=1")

    result = snakemake(tmp_path, _gpu_config(), *targets, *gpu_jobs, "--resources", "gpu=2")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    (id_a, start_a, end_a), (id_b, start_b, end_b) = _slot_intervals(tmp_path)
    assert start_a < end_b and start_b < end_a, "the two jobs should have run side by side"
    assert {id_a, id_b} == {"7", "9"}

    shutil.rmtree(tmp_path / "results/features")
    result = snakemake(tmp_path, _gpu_config(), *targets, *gpu_jobs, "--resources", "gpu=1")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    (_, start_a, end_a), (_, start_b, end_b) = _slot_intervals(tmp_path)
    assert end_a < start_b or end_b < start_a, "gpu=1: one GPU job at a time"

    # --resources forgotten, one device: both jobs start, one waits for the other's device
    shutil.rmtree(tmp_path / "results/features")
    result = snakemake(tmp_path, {**_gpu_config(), "gpu_devices": ["7"]}, *targets, *gpu_jobs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    (id_a, start_a, end_a), (id_b, start_b, end_b) = _slot_intervals(tmp_path)
    assert id_a == id_b == "7" and (end_a < start_b or end_b < start_a)
    logs = [(tmp_path / f"results/logs/extract/tiny/pixels/shard-{k}.log").read_text() for k in (0, 1)]
    assert sum(log.count("waiting for a free GPU") for log in logs) == 1, logs
