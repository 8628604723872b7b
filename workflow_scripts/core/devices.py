"""Which GPUs a job computes on, and the process group of a job that trains on several.

Snakemake's `--resources gpu=N` only caps how many GPUs the running jobs ask for together; it does
not say which GPU each job gets, so without more every job would use GPU 0. A job therefore claims
free GPUs itself (`claim_gpus`): a non-blocking `flock` on LOCK_DIR/gpu{i}.lock for each, held for
the life of the process (the OS drops it when the process ends, kill -9 and crashes included), and
CUDA_VISIBLE_DEVICES set to the claimed indices before CUDA starts. Where CUDA_VISIBLE_DEVICES is
already set (SLURM sets it for its jobs, or the user did), that choice stands and nothing is claimed.

A job on several GPUs runs one process per GPU under torchrun (DistributedDataParallel). The GPUs
must be claimed once for the whole job, before torchrun starts its processes, so such a job is
started through this module:

    python -m workflow_scripts.core.devices --gpus N -- COMMAND ARGS...

claims N GPUs, then replaces itself (exec: same process id, so Snakemake's signals reach it, and the
locks stay held) with `python -m torch.distributed.run --standalone --nproc_per_node P -m
workflow_scripts COMMAND ARGS... --gpus N` when P = min(N, GPUs visible) > 1, else with
`python -m workflow_scripts COMMAND ARGS... --gpus N`. Inside, `distributed_context` joins the
process group that torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) describes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:  # torch loads only where a process group is made: the launcher starts fast
    import torch

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
# Relative to the working directory, which Snakemake makes the workflow's directory for every job:
# all jobs of one workflow share these locks. Jobs of other directories or users do not see them.
LOCK_DIR = Path(".snakemake/gpu_locks")
CLAIM_TIMEOUT_S = 600.0  # Snakemake's gpu resource should make waiting rare; a long wait means a misconfiguration
POLL_S = 2.0

# Open lock files of this process's claims: the flocks live as long as these files stay open.
_held: list[IO[str]] = []


def gpu_count() -> int:
    """Physical NVIDIA GPUs on this machine, from NVML (the driver's library that nvidia-smi uses).

    Not torch.cuda: CUDA reads CUDA_VISIBLE_DEVICES once, when it starts, and torch.cuda.is_available()
    starts it (cudaGetDeviceCount); setting the variable afterwards has no effect on that process.
    NVML does not start CUDA. No driver library, or one that does not start, means no usable GPU.
    """
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    if nvml.nvmlInit_v2() != 0:
        log.warning("the NVIDIA driver library is present but NVML did not start: treating this machine as GPU-less")
        return 0
    try:
        count = ctypes.c_uint(0)
        return count.value if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 else 0
    finally:
        nvml.nvmlShutdown()


def claim_gpus(n: int, lock_dir: str | Path = LOCK_DIR, device_count: int | None = None,
               timeout_s: float = CLAIM_TIMEOUT_S, poll_s: float = POLL_S) -> list[int] | None:
    """Claim `n` free GPUs for this process, make them the only ones CUDA sees, and return their indices.

    Claims nothing and returns None when n is 0, when CUDA_VISIBLE_DEVICES is already set (SLURM or
    the user chose), or when the machine has no GPU (`device_count`, default `gpu_count()`): the job
    then runs where it is. Call it before anything starts CUDA. A claim is all or nothing, so two jobs
    can never each hold part of what both need and wait on each other forever.
    """
    if n <= 0 or VISIBLE in os.environ:
        return None
    count = gpu_count() if device_count is None else device_count
    if count == 0:
        return None
    fix = (f"run snakemake with --resources gpu=N, N no higher than the {count} GPU(s) of this machine, and give "
           "no job more GPUs than that (config resources.<rule>.gpu)")
    if n > count:
        raise InputError("resources gpu", f"a job asks for {n} GPUs; this machine has {count}", fix)
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    claimed = _try_claim(n, count, lock_dir)
    if claimed is None:
        log.info("waiting up to %.0f s for %d free GPU(s) of %d (locks in %s)", timeout_s, n, count, lock_dir)
    while claimed is None:
        if time.monotonic() >= deadline:
            raise InputError(str(lock_dir), f"{n} of the {count} GPUs were not free within {timeout_s:.0f} s",
                             f"{fix}; processes outside Snakemake holding {lock_dir}/gpu*.lock count too")
        time.sleep(poll_s)
        claimed = _try_claim(n, count, lock_dir)
    _held.extend(claimed.values())
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # GPU i is then nvidia-smi's GPU i, as NVML counts
    os.environ[VISIBLE] = ",".join(map(str, claimed))
    log.info("claimed GPU(s) %s: %s=%s", list(claimed), VISIBLE, os.environ[VISIBLE])
    return list(claimed)


def _try_claim(n: int, count: int, lock_dir: Path) -> dict[int, IO[str]] | None:
    """Lock the first `n` free GPUs (index -> open lock file), or lock none and return None."""
    claimed: dict[int, IO[str]] = {}
    for index in range(count):
        handle = open(lock_dir / f"gpu{index}.lock", "a+")  # noqa: SIM115 (stays open: it holds the lock)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # who holds it (or last held it), for a person wondering
        handle.flush()
        claimed[index] = handle
        if len(claimed) == n:
            return claimed
    for handle in claimed.values():
        handle.close()
    return None


def visible_gpu_count() -> int:
    """GPUs CUDA will show this process: those CUDA_VISIBLE_DEVICES names when it is set, else all."""
    if VISIBLE in os.environ:
        return len([entry for entry in os.environ[VISIBLE].split(",") if entry.strip()])
    return gpu_count()


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in its job: rank among world_size processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that predicts and writes outputs."""
        return self.rank == 0


def process_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def distributed_context(device: torch.device) -> Iterator[DistributedContext]:
    """This process's DistributedContext, with the process group joined while inside when the job
    has several processes (NCCL between GPUs, gloo on CPU) and left on the way out, error or not.

    `device` is this process's device as `model.pick_device` chose it (cuda:LOCAL_RANK or cpu).
    With one process nothing is started, so single-process runs stay as they were.
    """
    rank, world_size, local_rank = process_ranks()
    context = DistributedContext(rank, world_size, local_rank, device)
    if world_size == 1:
        yield context
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # env://: torchrun's variables
    log.info("rank %d of %d on %s", rank, world_size, device)
    try:
        yield context
    finally:
        dist.destroy_process_group()


def launch_arguments(command: list[str], gpus: int, processes: int) -> list[str]:
    """The command line that runs `python -m workflow_scripts COMMAND ARGS --gpus N`, under torchrun
    (one process per GPU, a free rendezvous port of this machine) when `processes` > 1."""
    arguments = ["-m", "workflow_scripts", *command, "--gpus", str(gpus)]
    if processes > 1:
        arguments = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *arguments]
    return [sys.executable, *arguments]


def main(argv: list[str] | None = None) -> None:
    """Claim the GPUs for a whole job, then become the job (exec), keeping the claim's locks open."""
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.core.devices", description=main.__doc__)
    parser.add_argument("--gpus", type=int, required=True, help="GPUs the job reserved (0 = CPU)")
    parser.add_argument("--lock-dir", default=str(LOCK_DIR))
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then a workflow_scripts command and arguments")
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("no command given after --")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        claim_gpus(arguments.gpus, arguments.lock_dir)
    except InputError as error:
        print(f"ERROR (bad input) {error}", file=sys.stderr)
        sys.exit(2)
    for handle in _held:
        os.set_inheritable(handle.fileno(), True)  # survive exec: the job holds its GPUs until it ends
    processes = min(arguments.gpus, visible_gpu_count())
    launch = launch_arguments(command, arguments.gpus, processes)
    log.info("starting %s", " ".join(launch))
    logging.shutdown()
    os.execv(launch[0], launch)


if __name__ == "__main__":
    main()
