"""Masked-language-model pretraining of a Geneformer-shaped BERT (or ALBERT) on the tokenized corpus.

Which gene tokens are selected and how they are corrupted is `pretraining.masking` (masking.py: by
default 15 % of the gene tokens, of those 80 % <mask>, 10 % a random gene, 10 % kept; special and
padding tokens never). The loss is computed only at selected positions: the output projection onto
the vocabulary runs on those positions alone, not on every position of the batch. Beside the model,
pretraining_summary.json records its parameter count, the held-out loss and the training seconds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.batching import RaggedTokens, inference_batches, load_tokenized
from ..core.devices import distributed_context
from ..core.dictionaries import load_token_dictionary
from ..core.model import (
    MLM_HEADS,
    autocast,
    geneformer_config,
    new_masked_lm,
    parameter_count,
    pick_device,
)
from ..core.outputs import atomic_path, write_tsv
from ..core.sections import TokenizerSettings
from ..core.training import discard_checkpoints, resume_dir_of, train
from .masking import Masking, build_masking, evaluation_settings, masking_rate
from .settings import MaskingSettings, ModelSettings, PretrainingSettings

log = logging.getLogger(__name__)

SUMMARY_FILE = "pretraining_summary.json"  # in the checkpoint directory, beside config.json


def masked_lm_loss(model, corrupted: torch.Tensor, attention_mask: torch.Tensor, original: torch.Tensor,
                   selected: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the selected positions only (vocabulary projection on those rows alone)."""
    hidden = model.base_model(input_ids=corrupted, attention_mask=attention_mask).last_hidden_state
    logits = getattr(model, MLM_HEADS[model.config.model_type])(hidden[selected])
    return F.cross_entropy(logits.float(), original[selected])


def pretrain_model(tokenized_dir: str | Path, token_dictionary_tsv: str | Path, model: ModelSettings,
                   pretraining: PretrainingSettings, tokenizer: TokenizerSettings, evaluation_masking: MaskingSettings,
                   seed: int, threads: int, output_dir: str | Path, gpus: int | None = None,
                   gene_sets_gmt: str | None = None) -> None:
    """Pretrain from scratch and save with save_pretrained (safetensors) beside its token dictionary.

    The model's input size is tokenizer.model_input_size. `evaluation_masking`: the masking settings of
    the held-out loss (random selection at their constant rate, see masking.evaluation_settings): the
    training's own, or in an ablation the masking every variant shares, so that all are scored on the
    same corrupted cells. `gpus`: the GPUs the job reserved (see model.pick_device). Under torchrun every
    process trains (and computes the validation loss); rank 0 alone writes. `gene_sets_gmt`: the gene
    sets of pathway masking."""
    torch.set_num_threads(threads)
    tokens, _ = load_tokenized(tokenized_dir)
    vocabulary = load_token_dictionary(str(token_dictionary_tsv))
    masking = build_masking(pretraining.masking, vocabulary, gene_sets_gmt)
    evaluation = build_masking(evaluation_settings(evaluation_masking), vocabulary)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tokens))
    n_validation = max(1, int(round(len(tokens) * pretraining.validation_fraction)))
    validation_rows, training_rows = np.sort(order[:n_validation]), order[n_validation:]
    device = pick_device(gpus)
    network = new_masked_lm(geneformer_config(model.as_dict(), len(vocabulary), tokenizer.model_input_size), seed)
    generator = torch.Generator().manual_seed(seed)
    cells_seen = [0]  # the masking schedule's clock: cells trained on so far, by this process

    def loss_of_batch(net, input_ids, attention_mask, rows):
        rate = masking_rate(pretraining.masking, cells_seen[0] / cells_per_process)
        cells_seen[0] += len(rows)
        corrupted, selected = masking(input_ids.cpu(), attention_mask.cpu(), generator, rate)
        return masked_lm_loss(net, corrupted.to(device), attention_mask, input_ids, selected.to(device))

    def validation_loss(epoch: int) -> dict[str, float]:
        return {"validation_loss": held_out_loss(network, tokens, validation_rows, evaluation, seed, device)}

    start = time.perf_counter()
    with distributed_context(device) as context:
        cells_per_process = len(training_rows) * pretraining.epochs / context.world_size
        training_log = train(network, tokens, training_rows, loss_of_batch, pretraining.as_dict(), seed, device, None,
                             on_epoch_end=validation_loss, resume_dir=resume_dir_of(output_dir),
                             generators=[generator], loss_state=cells_seen)
    seconds = time.perf_counter() - start
    if not context.is_main:
        return
    summary = {"architecture": network.config.model_type, "parameters": parameter_count(network),
               "encoder_parameters": parameter_count(network.base_model),
               "heldout_mlm_loss": float(training_log["validation_loss"].dropna().iloc[-1]),
               "pretrain_seconds": round(seconds, 2), "steps": len(training_log),
               "training_cells": len(training_rows), "validation_cells": len(validation_rows),
               "masking": pretraining.masking.as_dict(), "evaluation_masking": evaluation.settings.as_dict()}
    with atomic_path(output_dir) as temporary:
        temporary.mkdir()
        write_tsv(training_log, temporary / "training_log.tsv")
        network.save_pretrained(temporary, safe_serialization=True)
        shutil.copyfile(token_dictionary_tsv, temporary / "token_dictionary.tsv")
        (temporary / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    discard_checkpoints(resume_dir_of(output_dir))


@torch.no_grad()
def held_out_loss(network, tokens: RaggedTokens, rows: np.ndarray, masking: Masking, seed: int,
                  device: torch.device, batch_size: int = 64) -> float:
    """MLM loss on held-out cells with a fixed masking seed, so epochs and variants compare fairly."""
    network.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    total, count = 0.0, 0
    for batch in inference_batches(tokens.lengths[rows], batch_size):
        input_ids, attention_mask = tokens.padded(rows[batch])
        corrupted, selected = masking(input_ids, attention_mask, generator)
        with autocast(device):
            loss = masked_lm_loss(network, corrupted.to(device), attention_mask.to(device), input_ids.to(device),
                                  selected.to(device))
        n_selected = int(selected.sum())
        total += float(loss) * n_selected
        count += n_selected
    network.train()
    return total / max(count, 1)
