"""The training loop shared by pretraining and fine-tuning: AdamW, a warmup schedule, length-grouped
batches with dynamic padding, bf16 autocast on GPU, gradient clipping, and a per-step log.

Under torchrun (a process group joined, see devices.distributed_context) every process trains a
DistributedDataParallel copy on its own share of each epoch's batches; the batch size is per process,
so one step of P processes sees P batches (Hugging Face's per_device_train_batch_size convention).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import get_scheduler

from .batching import RaggedTokens, length_grouped_batches
from .errors import InputError
from .io_utils import write_tsv
from .model import autocast

log = logging.getLogger(__name__)

# loss_of_batch(model, input_ids, attention_mask, rows) -> scalar loss tensor
BatchLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor]


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
          before_epoch: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Train on `rows` of `tokens` for settings['epochs'] epochs; return the step log, and write it
    to `log_tsv` (when given) from rank 0 alone.

    The optimizer holds every parameter trainable at the start; `before_epoch` may freeze some for
    an epoch (AdamW skips parameters without gradients), e.g. for linear probing phases.
    `before_epoch` and `on_epoch_end` run in every process.

    With P processes, every process draws the same seeded batch list and takes every P-th batch
    from its rank on; the last (number of batches mod P) batches of the shuffled list are left out
    that epoch, so that all processes step the same number of times. The logged loss is the mean
    of the processes' batch losses.
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
    model.to(device)
    records: list[dict[str, float]] = []
    step = 0
    for epoch in range(settings["epochs"]):
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        batch_loss = _batch_loss(model, loss_of_batch, device, world_size)
        batches = length_grouped_batches(lengths, settings["batch_size"], rng)
        progress = tqdm(batches[rank:steps_per_epoch * world_size:world_size],
                        desc=f"epoch {epoch + 1}/{settings['epochs']}", mininterval=5, disable=rank != 0)
        for batch in progress:
            batch_rows = rows[batch]
            input_ids, attention_mask = tokens.padded(batch_rows)
            with autocast(device):
                loss = batch_loss(input_ids.to(device), attention_mask.to(device), batch_rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            step += 1
            records.append({"step": step, "epoch": epoch + 1, "loss": _mean_over_processes(loss, world_size),
                            "learning_rate": scheduler.get_last_lr()[0]})
            progress.set_postfix(loss=f"{records[-1]['loss']:.3f}")
        if on_epoch_end is not None:
            extra = on_epoch_end(epoch + 1)
            records[-1].update(extra)
            log.info("epoch %d: %s", epoch + 1, extra)
    table = pd.DataFrame.from_records(records)
    if log_tsv is not None and rank == 0:
        write_tsv(table, log_tsv)
    return table


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


def _mean_over_processes(loss: torch.Tensor, world_size: int) -> float:
    """The batch loss averaged over the processes (summed, then divided: gloo has no average)."""
    if world_size == 1:
        return float(loss.detach())
    total = loss.detach().clone()
    torch.distributed.all_reduce(total)
    return float(total) / world_size
