"""The training loop shared by pretraining and fine-tuning: AdamW, a warmup schedule, length-grouped
batches with dynamic padding, bf16 autocast on GPU, gradient clipping, and a per-step log."""

from __future__ import annotations

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
          settings: dict[str, Any], seed: int, device: torch.device, log_tsv: str | Path,
          on_epoch_end: Callable[[int], dict[str, float]] | None = None,
          before_epoch: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Train on `rows` of `tokens` for settings['epochs'] epochs; write and return the step log.

    The optimizer holds every parameter trainable at the start; `before_epoch` may freeze some for
    an epoch (AdamW skips parameters without gradients), e.g. for linear probing phases.
    """
    rng = np.random.default_rng(seed)
    lengths = tokens.lengths[rows]
    steps_per_epoch = -(-len(rows) // settings["batch_size"])
    optimizer, scheduler = optimizer_and_schedule(model, settings, steps_per_epoch * settings["epochs"])
    model.to(device)
    records: list[dict[str, float]] = []
    step = 0
    for epoch in range(settings["epochs"]):
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        batches = length_grouped_batches(lengths, settings["batch_size"], rng)
        progress = tqdm(batches, desc=f"epoch {epoch + 1}/{settings['epochs']}", mininterval=5)
        for batch in progress:
            batch_rows = rows[batch]
            input_ids, attention_mask = tokens.padded(batch_rows)
            with autocast(device):
                loss = loss_of_batch(model, input_ids.to(device), attention_mask.to(device), batch_rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            step += 1
            records.append({"step": step, "epoch": epoch + 1, "loss": float(loss.detach()),
                            "learning_rate": scheduler.get_last_lr()[0]})
            progress.set_postfix(loss=f"{records[-1]['loss']:.3f}")
        if on_epoch_end is not None:
            extra = on_epoch_end(epoch + 1)
            records[-1].update(extra)
            log.info("epoch %d: %s", epoch + 1, extra)
    table = pd.DataFrame.from_records(records)
    write_tsv(table, log_tsv)
    return table
