"""GPU claims (file locks, CUDA_VISIBLE_DEVICES) and multi-process training, all on the CPU."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from workflow_scripts.core import devices
from workflow_scripts.core.batching import RaggedTokens
from workflow_scripts.core.devices import (
    claim_gpus,
    distributed_context,
    launch_arguments,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.training import train
from workflow_scripts.finetune.finetuning import head_only_schedule

REPO = Path(__file__).resolve().parent.parent

# One job in its own process, as Snakemake runs them: claims GPUs of a fake 3-GPU machine, prints
# their indices, and holds them until its stdin closes or it is killed.
CLAIMER = textwrap.dedent("""
    import sys
    from workflow_scripts.core.devices import claim_gpus
    print(claim_gpus(int(sys.argv[1]), sys.argv[2], device_count=3, timeout_s=30, poll_s=0.05), flush=True)
    sys.stdin.read()
""")


def start_job(n: int, lock_dir: Path) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if key != devices.VISIBLE}
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(n), str(lock_dir)], cwd=REPO, env=environment,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def claimed_by(job: subprocess.Popen) -> list[int]:
    return ast.literal_eval(job.stdout.readline())


@pytest.fixture
def unclaimed(monkeypatch):
    """This process as a job nobody chose GPUs for; its claims are dropped afterwards."""
    monkeypatch.delenv(devices.VISIBLE, raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    yield
    while devices._held:
        devices._held.pop().close()


def test_concurrent_jobs_get_distinct_gpus_and_a_killed_job_frees_its_own(tmp_path, unclaimed):
    jobs = [start_job(2, tmp_path), start_job(1, tmp_path)]
    try:
        first, second = (claimed_by(job) for job in jobs)
        assert sorted(first + second) == [0, 1, 2]
        with pytest.raises(InputError, match="--resources gpu=N"):  # all taken: waits, then names the fix
            claim_gpus(1, tmp_path, device_count=3, timeout_s=0.3, poll_s=0.1)
        waiting = start_job(1, tmp_path)
        jobs.append(waiting)
        jobs[0].kill()  # no clean exit: the OS still drops the dead job's locks
        assert claimed_by(waiting)[0] in first
        assert (tmp_path / f"gpu{second[0]}.lock").read_text() == f"{jobs[1].pid}\n"
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_a_claim_sets_the_visible_devices_and_holds_them(tmp_path, unclaimed):
    assert claim_gpus(2, tmp_path, device_count=3) == [0, 1]
    assert os.environ[devices.VISIBLE] == "0,1" and os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert devices.visible_gpu_count() == 2
    os.environ.pop(devices.VISIBLE)
    assert claim_gpus(1, tmp_path, device_count=3) == [2]  # this process's own locks count as taken


def test_chosen_devices_and_gpu_less_machines_are_left_alone(tmp_path, unclaimed, monkeypatch):
    assert claim_gpus(1, tmp_path, device_count=0) is None and devices.VISIBLE not in os.environ
    assert claim_gpus(0, tmp_path, device_count=3) is None and devices.VISIBLE not in os.environ
    monkeypatch.setenv(devices.VISIBLE, "3")  # SLURM's or the user's choice
    assert claim_gpus(1, tmp_path / "locks", device_count=4) is None
    assert os.environ[devices.VISIBLE] == "3" and not (tmp_path / "locks").exists()


def test_more_gpus_than_the_machine_has_is_refused_at_once(tmp_path, unclaimed):
    with pytest.raises(InputError, match="asks for 3 GPUs; this machine has 2"):
        claim_gpus(3, tmp_path, device_count=2, timeout_s=60)


# The launcher on a fake 3-GPU machine, whose job (after exec) prints what it sees and waits on stdin.
LAUNCHER = textwrap.dedent("""
    import sys
    from workflow_scripts.core import devices
    devices.gpu_count = lambda: 3
    job = "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); sys.stdin.read()"
    devices.launch_arguments = lambda command, gpus, processes: [sys.executable, "-c", job]
    devices.main(["--gpus", "2", "--lock-dir", sys.argv[1], "--", "finetune"])
""")


def test_the_launched_job_keeps_the_launchers_claim(tmp_path, unclaimed):
    environment = {key: value for key, value in os.environ.items() if key != devices.VISIBLE}
    job = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path)], cwd=REPO, env=environment,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline() == "0,1\n"
        with pytest.raises(InputError):
            claim_gpus(2, tmp_path, device_count=3, timeout_s=0.2, poll_s=0.1)
    finally:
        job.kill()
        job.wait()


def test_launch_runs_several_gpus_under_torchrun_and_one_plainly():
    assert launch_arguments(["finetune", "--fold", "1"], 2, 2)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "workflow_scripts", "finetune", "--fold", "1", "--gpus", "2"]
    assert launch_arguments(["finetune"], 2, 0)[1:] == ["-m", "workflow_scripts", "finetune", "--gpus", "2"]


SETTINGS = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_scheduler": "linear", "warmup_steps": 1,
            "weight_decay": 0.01, "max_grad_norm": 1.0}
N_CELLS = 42  # 11 batches of 4: 5 steps per process and epoch, one batch left out


def ddp_worker(rank: int, port: int, directory: Path) -> None:
    """One of two processes: a differently initialised tiny BERT per rank, trained on its share."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 12, N_CELLS)
    tokens = RaggedTokens(rng.integers(2, 30, int(lengths.sum())), np.concatenate([[0], np.cumsum(lengths)]))
    labels = torch.from_numpy(rng.integers(0, 2, N_CELLS))
    torch.manual_seed(rank)  # the process group must make them equal
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))
    initial = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}

    def loss_of_batch(net, input_ids, attention_mask, rows):  # submodules called directly, as pretraining does
        pooled = net.bert(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.cross_entropy(net.classifier(pooled), labels[rows])

    with distributed_context(torch.device("cpu")) as context:
        assert (context.rank, context.world_size, context.is_main) == (rank, 2, rank == 0)
        table = train(model, tokens, np.arange(N_CELLS), loss_of_batch, SETTINGS, 0, context.device,
                      directory / f"log_rank{rank}.tsv", before_epoch=head_only_schedule(model, 1))
    changed = [name for name, parameter in model.named_parameters() if not torch.equal(initial[name], parameter)]
    torch.save({"parameters": model.state_dict(), "losses": table["loss"].to_numpy(), "changed": changed},
               directory / f"rank{rank}.pt")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_in_step_and_only_rank_0_writes_the_log(tmp_path):
    mp.spawn(ddp_worker, args=(free_port(), tmp_path), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1))
    assert first["parameters"].keys() == second["parameters"].keys()
    for name, parameter in first["parameters"].items():
        assert torch.equal(parameter, second["parameters"][name]), name
    assert any(name.startswith("bert.encoder") for name in first["changed"])  # trained after the head-only epoch
    assert np.array_equal(first["losses"], second["losses"])  # the same averaged loss in every process
    log = pd.read_csv(tmp_path / "log_rank0.tsv", sep="\t")
    assert not (tmp_path / "log_rank1.tsv").exists()
    assert log["step"].tolist() == list(range(1, 11)) and log["epoch"].tolist() == [1] * 5 + [2] * 5
    assert np.allclose(log["loss"], first["losses"])
