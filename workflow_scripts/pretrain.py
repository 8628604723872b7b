"""Masked-language-model pretraining of a Geneformer-shaped BERT on the tokenized corpus.

Of the gene tokens of each cell, `mask_probability` are selected; of those, `mask_token_fraction`
become <mask>, `random_token_fraction` a random gene token, and the rest stay as they are. Special
and padding tokens are never selected. The loss is computed only at selected positions: the output
projection onto the vocabulary runs on those positions alone, not on every position of the batch.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .batching import RaggedTokens, inference_batches, load_tokenized
from .devices import distributed_context
from .dictionaries import MASK_TOKEN, SPECIAL_TOKENS, load_token_dictionary
from .io_utils import atomic_path, write_tsv
from .model import autocast, geneformer_config, new_masked_lm, pick_device
from .training import train

log = logging.getLogger(__name__)


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, settings: dict[str, Any], mask_id: int,
                gene_ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (corrupted input ids, selected positions) for BERT-style masking."""
    draw = torch.rand(input_ids.shape, generator=generator)
    selected = (draw < settings["mask_probability"]) & maskable
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (action < settings["mask_token_fraction"])
    to_random = selected & ~to_mask & (action < settings["mask_token_fraction"] + settings["random_token_fraction"])
    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_id
    random_picks = torch.randint(len(gene_ids), input_ids.shape, generator=generator)
    corrupted[to_random] = gene_ids[random_picks[to_random]]
    return corrupted, selected


def masked_lm_loss(model, corrupted: torch.Tensor, attention_mask: torch.Tensor, original: torch.Tensor,
                   selected: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the selected positions only (vocabulary projection on those rows alone)."""
    hidden = model.bert(input_ids=corrupted, attention_mask=attention_mask).last_hidden_state
    logits = model.cls(hidden[selected])
    return F.cross_entropy(logits.float(), original[selected])


def pretrain_model(tokenized_dir: str | Path, token_dictionary_tsv: str | Path, model: dict[str, Any],
                   pretraining: dict[str, Any], model_input_size: int, seed: int, threads: int,
                   output_dir: str | Path, gpus: int | None = None) -> None:
    """Pretrain from scratch and save with save_pretrained (safetensors) beside its token dictionary.

    `gpus`: the GPUs the job reserved (see model.pick_device). Under torchrun every process trains
    (and computes the validation loss); rank 0 alone writes."""
    torch.set_num_threads(threads)
    tokens, _ = load_tokenized(tokenized_dir)
    vocabulary = load_token_dictionary(str(token_dictionary_tsv))
    special_ids = {vocabulary[token] for token in SPECIAL_TOKENS if token in vocabulary}
    gene_ids = torch.tensor(sorted(set(vocabulary.values()) - special_ids))
    maskable_lookup = torch.ones(max(vocabulary.values()) + 1, dtype=torch.bool)
    maskable_lookup[list(special_ids)] = False

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tokens))
    n_validation = max(1, int(round(len(tokens) * pretraining["validation_fraction"])))
    validation_rows, training_rows = np.sort(order[:n_validation]), order[n_validation:]
    device = pick_device(gpus)
    network = new_masked_lm(geneformer_config(model, len(vocabulary), model_input_size), seed)
    generator = torch.Generator().manual_seed(seed)

    def loss_of_batch(net, input_ids, attention_mask, rows):
        maskable = maskable_lookup[input_ids.cpu()] & attention_mask.cpu().bool()
        corrupted, selected = mask_tokens(input_ids.cpu(), maskable, pretraining, vocabulary[MASK_TOKEN],
                                          gene_ids, generator)
        return masked_lm_loss(net, corrupted.to(device), attention_mask, input_ids, selected.to(device))

    def validation_loss(epoch: int) -> dict[str, float]:
        return {"validation_loss": held_out_loss(network, tokens, validation_rows, maskable_lookup, pretraining,
                                                 vocabulary[MASK_TOKEN], gene_ids, seed, device)}

    with distributed_context(device) as context:
        training_log = train(network, tokens, training_rows, loss_of_batch, pretraining, seed, device, None,
                             on_epoch_end=validation_loss)
    if not context.is_main:
        return
    with atomic_path(output_dir) as temporary:
        temporary.mkdir()
        write_tsv(training_log, temporary / "training_log.tsv")
        network.save_pretrained(temporary, safe_serialization=True)
        shutil.copyfile(token_dictionary_tsv, temporary / "token_dictionary.tsv")


@torch.no_grad()
def held_out_loss(network, tokens: RaggedTokens, rows: np.ndarray, maskable_lookup: torch.Tensor,
                  settings: dict[str, Any], mask_id: int, gene_ids: torch.Tensor, seed: int,
                  device: torch.device, batch_size: int = 64) -> float:
    """MLM loss on held-out cells with a fixed masking seed, so epochs and variants compare fairly."""
    network.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    total, count = 0.0, 0
    for batch in inference_batches(tokens.lengths[rows], batch_size):
        input_ids, attention_mask = tokens.padded(rows[batch])
        maskable = maskable_lookup[input_ids] & attention_mask.bool()
        corrupted, selected = mask_tokens(input_ids, maskable, settings, mask_id, gene_ids, generator)
        with autocast(device):
            loss = masked_lm_loss(network, corrupted.to(device), attention_mask.to(device), input_ids.to(device),
                                  selected.to(device))
        n_selected = int(selected.sum())
        total += float(loss) * n_selected
        count += n_selected
    network.train()
    return total / max(count, 1)
