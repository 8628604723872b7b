"""The training loop shared by pretraining and fine-tuning: AdamW, a warmup schedule, length-grouped
batches with dynamic padding, bf16 autocast on GPU, gradient clipping, and a per-step log.

Under torchrun (a process group joined, see devices.distributed_context) every process trains a
DistributedDataParallel copy on its own share of each epoch's batches; the batch size is per process,
so one step of P processes sees P batches (Hugging Face's per_device_train_batch_size convention).

Interruption: given `resume_dir`, training saves a checkpoint there every `checkpoint_every_steps`
optimizer steps and at each epoch end (model, optimizer, LR schedule, the epoch and how many of its
batches are done, the step log, and every RNG state), and a rerun resumes from it: the epoch's batch
order is drawn again from the saved state of the batching generator and the batches done are skipped,
so the result equals an uninterrupted run's. A checkpoint holds a fingerprint of what decides the
result (settings, seed, the training rows and their tokens, the initial weights, the process count);
one that does not match is ignored. Callers discard the directory once their outputs are written.

Out of memory: a CUDA out-of-memory error in a step of a one-process job retries that step with half
the micro-batch and twice the gradient accumulation, so every optimizer step still sees the whole batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import pickle
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import get_scheduler

from .batching import RaggedTokens, length_grouped_batches
from .errors import InputError
from .model import autocast
from .outputs import atomic_path, write_tsv

log = logging.getLogger(__name__)

# loss_of_batch(model, input_ids, attention_mask, rows) -> scalar loss tensor
BatchLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor]

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1  # part of the fingerprint: checkpoints of another layout are ignored
# settings that change how often checkpoints are written, not what is trained
RESUME_NEUTRAL_SETTINGS = ("checkpoint_every_steps",)


@dataclasses.dataclass
class Progress:
    """Where training stands: what a checkpoint records besides the model, optimizer, schedule and RNGs."""

    epoch: int  # the epoch under way (0-based)
    done: int  # this process's batches of that epoch already trained on
    step: int  # optimizer steps so far
    micro_batch: int  # cells per forward pass: batch_size, or less after an out-of-memory retry
    batch_rng: dict[str, Any]  # the batching generator's state before this epoch's batch order was drawn
    records: list[dict[str, float]]


def resume_dir_of(output: str | Path) -> Path:
    """Where a job writing `output` keeps its training checkpoints: beside it, not in the atomic
    temporary directory (removed on failure), and not an output Snakemake deletes when a job fails."""
    output = Path(output)
    return output.with_name(f"{output.name}.resume")


def discard_checkpoints(resume_dir: str | Path | None) -> None:
    """Remove the checkpoints once the job's outputs are in place (a rerun then starts afresh)."""
    if resume_dir is not None:
        shutil.rmtree(resume_dir, ignore_errors=True)


def optimizer_and_schedule(model: torch.nn.Module, settings: dict[str, Any], total_steps: int):
    """AdamW without decay on biases and LayerNorm weights (the BERT convention), and the LR schedule."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim == 1 else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings["learning_rate"],
    )
    scheduler = get_scheduler(
        settings["lr_scheduler"], optimizer,
        num_warmup_steps=min(settings["warmup_steps"], total_steps), num_training_steps=total_steps,
    )
    return optimizer, scheduler


def train(model: torch.nn.Module, tokens: RaggedTokens, rows: np.ndarray, loss_of_batch: BatchLoss,
          settings: dict[str, Any], seed: int, device: torch.device, log_tsv: str | Path | None,
          on_epoch_end: Callable[[int], dict[str, float]] | None = None,
          before_epoch: Callable[[int], None] | None = None, resume_dir: str | Path | None = None,
          generators: Sequence[torch.Generator] = (), loss_state: list[Any] | None = None) -> pd.DataFrame:
    """Train on `rows` of `tokens` for settings['epochs'] epochs; return the step log, and write it
    to `log_tsv` (when given) from rank 0 alone.

    The optimizer holds every parameter trainable at the start; `before_epoch` may freeze some for
    an epoch (AdamW skips parameters without gradients), e.g. for linear probing phases.
    `before_epoch` and `on_epoch_end` run in every process.

    With P processes, every process draws the same seeded batch list and takes every P-th batch
    from its rank on; the last (number of batches mod P) batches of the shuffled list are left out
    that epoch, so that all processes step the same number of times. The logged loss is the mean
    of the processes' batch losses.

    `resume_dir`: checkpoint there (every settings['checkpoint_every_steps'] steps when set, and at
    each epoch end) and resume from a matching checkpoint found there. `generators`: the caller's own
    random generators (e.g. pretraining's masking); `loss_state`: a list in which the loss keeps state
    between batches (e.g. a schedule's clock; numbers or strings). Both are saved and restored with the
    checkpoints, and rolled back when an out-of-memory step is retried.
    """
    rank, world_size = _rank_and_world_size()
    rng = np.random.default_rng(seed)
    lengths = tokens.lengths[rows]
    n_batches = -(-len(rows) // settings["batch_size"])
    steps_per_epoch = n_batches // world_size
    if world_size > 1 and steps_per_epoch == 0:
        raise InputError("resources gpu", f"{n_batches} training batch(es) cannot be shared by {world_size} processes",
                         "train this job on fewer GPUs, or lower batch_size")
    optimizer, scheduler = optimizer_and_schedule(model, settings, steps_per_epoch * settings["epochs"])
    progress = Progress(0, 0, 0, settings["batch_size"], rng.bit_generator.state, [])
    checkpoint, fingerprint = None, None
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        fingerprint = _broadcast(_fingerprint(model, tokens, rows, settings, seed, world_size) if rank == 0 else None,
                                 world_size)
        checkpoint = _matching_checkpoint(resume_dir / CHECKPOINT_FILE, fingerprint)
        log.info("checkpoints in %s, every %s optimizer steps and at each epoch end", resume_dir,
                 settings.get("checkpoint_every_steps") or "(no)")
    model.to(device)
    pending_state = None  # this process's RNGs and loss state at the checkpoint, set where training goes on
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        progress = Progress(**checkpoint["progress"])
        rng.bit_generator.state = progress.batch_rng
        pending_state = checkpoint["processes"][rank]
        log.info("resuming from %s: epoch %d, %d of %d batches done, step %d", resume_dir / CHECKPOINT_FILE,
                 progress.epoch + 1, progress.done, steps_per_epoch, progress.step)

    def save(epoch: int, done: int, batch_rng: dict[str, Any]) -> None:
        if resume_dir is None:
            return
        process_states = _gathered(_process_state(device, generators, loss_state), world_size)
        if rank == 0:
            with atomic_path(resume_dir / CHECKPOINT_FILE) as temporary:
                torch.save({"fingerprint": fingerprint, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "progress": dataclasses.asdict(dataclasses.replace(
                                progress, epoch=epoch, done=done, batch_rng=batch_rng)),
                            "processes": process_states}, temporary)

    every = settings.get("checkpoint_every_steps") or 0
    for epoch in range(progress.epoch, settings["epochs"]):
        first = progress.done if epoch == progress.epoch else 0
        if pending_state is not None and first == 0:  # resuming where an epoch ended
            _set_process_state(pending_state, device, generators, loss_state)
            pending_state = None
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        batch_loss = _batch_loss(model, loss_of_batch, device, world_size)
        batch_rng = rng.bit_generator.state
        batches = length_grouped_batches(lengths, settings["batch_size"], rng)
        batches = batches[rank:steps_per_epoch * world_size:world_size]
        if pending_state is not None:  # resuming inside an epoch, at its next batch
            _set_process_state(pending_state, device, generators, loss_state)
            pending_state = None
        bar = tqdm(batches[first:], initial=first, total=len(batches), desc=f"epoch {epoch + 1}/{settings['epochs']}",
                   mininterval=5, disable=rank != 0)
        for done, batch in enumerate(bar, start=first + 1):
            loss = _optimizer_step(batch_loss, tokens, rows[batch], optimizer, progress, device, world_size,
                                   generators, loss_state)
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            progress.step += 1
            progress.records.append({"step": progress.step, "epoch": epoch + 1,
                                     "loss": _mean_over_processes(loss, world_size),
                                     "learning_rate": scheduler.get_last_lr()[0]})
            bar.set_postfix(loss=f"{progress.records[-1]['loss']:.3f}")
            if every and progress.step % every == 0 and done < len(batches):
                save(epoch, done, batch_rng)
        if on_epoch_end is not None:
            extra = on_epoch_end(epoch + 1)
            progress.records[-1].update(extra)
            log.info("epoch %d: %s", epoch + 1, extra)
        save(epoch + 1, 0, rng.bit_generator.state)
    table = pd.DataFrame.from_records(progress.records)
    if log_tsv is not None and rank == 0:
        write_tsv(table, log_tsv)
    return table


def _optimizer_step(batch_loss: Callable[[torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor],
                    tokens: RaggedTokens, batch_rows: np.ndarray, optimizer: torch.optim.Optimizer,
                    progress: Progress, device: torch.device, world_size: int,
                    generators: Sequence[torch.Generator], loss_state: list[Any] | None) -> torch.Tensor:
    """Gradients of one batch, in micro-batches of progress.micro_batch cells; on a CUDA out-of-memory
    error (one process), the micro-batch is halved and the step retried from the same RNG and loss
    states. Returns the batch loss."""
    while True:
        before = _process_state(device, generators, loss_state)
        try:
            optimizer.zero_grad(set_to_none=True)
            return _accumulated_loss(batch_loss, tokens, batch_rows, progress.micro_batch, device)
        except torch.OutOfMemoryError as error:
            if world_size > 1:  # the other processes wait in a gradient all-reduce: no retry is possible
                raise
            if progress.micro_batch == 1:
                raise InputError("resources", f"out of GPU memory at step {progress.step + 1} with one cell per "
                                 f"forward pass ({error})",
                                 "use a GPU with more memory, a smaller model_input_size, or train on the CPU "
                                 "(gpu: 0)") from error
        # outside the except block: the error's traceback, which holds the step's tensors, is gone
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        halved = progress.micro_batch // 2
        log.warning("CUDA out of memory at step %d with a micro-batch of %d cells: retrying with %d cells and "
                    "%d gradient accumulation steps (%d cells per optimizer step, as before)", progress.step + 1,
                    progress.micro_batch, halved, -(-len(batch_rows) // halved), len(batch_rows))
        progress.micro_batch = halved
        _set_process_state(before, device, generators, loss_state)


def _accumulated_loss(batch_loss: Callable[[torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor],
                      tokens: RaggedTokens, batch_rows: np.ndarray, micro_batch: int,
                      device: torch.device) -> torch.Tensor:
    """Forward and backward over the batch in parts of `micro_batch` cells, each part's loss weighted
    by its share of the cells: for a loss that is a mean over cells, loss and gradients are the whole
    batch's (up to rounding); for a mean over tokens (gene tasks, pretraining) a close approximation.
    Gradients are synced across processes on the last part only."""
    parts = [batch_rows[start:start + micro_batch] for start in range(0, len(batch_rows), micro_batch)]
    no_sync = getattr(batch_loss, "no_sync", contextlib.nullcontext)
    losses = []
    for index, part in enumerate(parts):
        input_ids, attention_mask = tokens.padded(part)
        with no_sync() if index < len(parts) - 1 else contextlib.nullcontext():
            with autocast(device):
                loss = batch_loss(input_ids.to(device), attention_mask.to(device), part) * (len(part) / len(batch_rows))
            loss.backward()
        losses.append(loss.detach())
    return sum(losses[1:], losses[0])


def _fingerprint(model: torch.nn.Module, tokens: RaggedTokens, rows: np.ndarray, settings: dict[str, Any],
                 seed: int, world_size: int) -> str:
    """SHA-256 of what decides a training run's result, so that a checkpoint of another run is never resumed."""
    digest = hashlib.sha256()
    recipe = {key: value for key, value in settings.items() if key not in RESUME_NEUTRAL_SETTINGS}
    digest.update(json.dumps([CHECKPOINT_FORMAT, recipe, seed, world_size], sort_keys=True, default=str).encode())
    for array in (np.asarray(rows, dtype=np.int64), tokens.offsets, tokens.values):
        digest.update(np.ascontiguousarray(array).data)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _matching_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it was written by this same training run, else None (with a warning)."""
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        log.warning("%s is unreadable (%s): ignored, training from the start", path, error)
        return None
    if checkpoint.get("fingerprint") != fingerprint:
        log.warning("%s was written for other settings, data or initial weights: ignored, training from the start",
                    path)
        return None
    return checkpoint


def _process_state(device: torch.device, generators: Sequence[torch.Generator], loss_state: list[Any] | None
                   ) -> dict[str, Any]:
    """Every random state training may draw from (dropout: torch's CPU or CUDA generator) and the loss's
    own state, in types torch.load(weights_only=True) reads back."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": numpy_state, "python": random.getstate(), "generators": [g.get_state() for g in generators],
            "loss_state": list(loss_state or [])}


def _set_process_state(states: dict[str, Any], device: torch.device, generators: Sequence[torch.Generator],
                       loss_state: list[Any] | None) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    numpy_state = {**states["numpy"], "state": {**states["numpy"]["state"]}}
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    random.setstate(states["python"])
    for generator, state in zip(generators, states["generators"], strict=True):
        generator.set_state(state)
    if loss_state is not None:
        loss_state[:] = states["loss_state"]


class _ModelLoss(torch.nn.Module):
    """The model and its batch loss as one module, for DistributedDataParallel to wrap: DDP syncs
    gradients only for work done inside its forward, and a loss may call submodules directly
    (pretraining projects onto the vocabulary at masked positions alone)."""

    def __init__(self, model: torch.nn.Module, loss_of_batch: BatchLoss):
        super().__init__()
        self.model = model
        self.loss_of_batch = loss_of_batch

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return self.loss_of_batch(self.model, input_ids, attention_mask, rows)


def _batch_loss(model: torch.nn.Module, loss_of_batch: BatchLoss, device: torch.device, world_size: int
                ) -> Callable[[torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor]:
    """loss(input_ids, attention_mask, rows): the plain loss in one process; with several, through DDP,
    wrapped anew each epoch so that it syncs exactly the parameters trainable in this epoch."""
    if world_size == 1:
        return functools.partial(loss_of_batch, model)
    return torch.nn.parallel.DistributedDataParallel(
        _ModelLoss(model, loss_of_batch), device_ids=[device] if device.type == "cuda" else None
    )


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _broadcast(value: Any, world_size: int) -> Any:
    """Rank 0's value in every process (so that all processes make the same resume decision)."""
    if world_size == 1:
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def _gathered(value: Any, world_size: int) -> list[Any]:
    """Every process's value, by rank (each process has its own RNG states)."""
    if world_size == 1:
        return [value]
    values: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(values, value)
    return values


def _mean_over_processes(loss: torch.Tensor, world_size: int) -> float:
    """The batch loss averaged over the processes (summed, then divided: gloo has no average)."""
    if world_size == 1:
        return float(loss.detach())
    total = loss.detach().clone()
    torch.distributed.all_reduce(total)
    return float(total) / world_size
