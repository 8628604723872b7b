"""Geneformer-shaped BERT models: configuration, loading, freezing, and checkpoint checks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification

from .config import WEIGHT_FILES
from .devices import claim_gpus, process_ranks
from .errors import InputError

log = logging.getLogger(__name__)

# Cell tasks put one label on a whole cell; gene tasks put labels on gene tokens.
CLASSIFIER_HEADS = {"sequence": BertForSequenceClassification, "token": BertForTokenClassification}


def geneformer_config(model: dict[str, Any], vocab_size: int, model_input_size: int) -> BertConfig:
    """BertConfig with Geneformer's shape: ReLU, LayerNorm eps 1e-12, absolute positions, pad id 0."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=model["hidden_size"],
        num_hidden_layers=model["num_hidden_layers"],
        num_attention_heads=model["num_attention_heads"],
        intermediate_size=model["intermediate_size"],
        hidden_act=model["hidden_act"],
        hidden_dropout_prob=model["hidden_dropout_prob"],
        attention_probs_dropout_prob=model["attention_probs_dropout_prob"],
        initializer_range=model["initializer_range"],
        layer_norm_eps=model["layer_norm_eps"],
        max_position_embeddings=model_input_size,
        pad_token_id=0,
        position_embedding_type="absolute",
    )


def check_checkpoint(checkpoint: str | Path, vocab_size: int, model_input_size: int) -> BertConfig:
    """Refuse a checkpoint directory that is incomplete or does not fit the token dictionary."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise InputError(str(checkpoint), "no config.json", "point model.checkpoint at a save_pretrained directory")
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        raise InputError(str(checkpoint), f"no weights ({' or '.join(WEIGHT_FILES)})", "copy the weights file in")
    config = BertConfig.from_pretrained(checkpoint)
    if config.vocab_size != vocab_size:
        raise InputError(
            str(checkpoint),
            f"vocab_size {config.vocab_size} differs from the token dictionary's {vocab_size} tokens",
            "use the token dictionary the checkpoint was trained with (reference.token_dictionary)",
        )
    if config.max_position_embeddings < model_input_size:
        raise InputError(
            str(checkpoint),
            f"max_position_embeddings {config.max_position_embeddings} < tokenizer.model_input_size {model_input_size}",
            "set tokenizer.model_input_size to the checkpoint's input size",
        )
    return config


def new_masked_lm(config: BertConfig, seed: int) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return BertForMaskedLM._from_config(config, attn_implementation="sdpa")


def classifier(checkpoint: str | Path, head: str, n_labels: int, id2label: dict[int, str], init: str, seed: int
               ) -> BertForSequenceClassification | BertForTokenClassification:
    """A sequence ("sequence") or token ("token") classifier from `checkpoint` weights, or the same
    architecture randomly initialised (init "random")."""
    torch.manual_seed(seed)
    model_class = CLASSIFIER_HEADS[head]
    labels = {"num_labels": n_labels, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if init == "random":
        config = BertConfig.from_pretrained(checkpoint, **labels)
        return model_class._from_config(config, attn_implementation="sdpa")
    return model_class.from_pretrained(checkpoint, attn_implementation="sdpa", **labels)


def freeze(model: torch.nn.Module, n_layers: int, embeddings: bool) -> None:
    """Freeze the first `n_layers` encoder layers (and the embeddings if asked), as Geneformer does."""
    bert = model.base_model
    if n_layers > len(bert.encoder.layer):
        raise InputError("finetuning.freeze_layers", f"{n_layers} > {len(bert.encoder.layer)} layers",
                         "freeze at most the model's number of layers")
    modules = list(bert.encoder.layer[:n_layers]) + ([bert.embeddings] if embeddings else [])
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad = False


def pick_device(gpus: int | None = None) -> torch.device:
    """The one place that decides where this process computes.

    gpus None: CUDA when present (for callers that reserved nothing in particular); 0: the CPU, as
    the job reserved no GPU; n > 0: first claim n free GPUs (devices.claim_gpus: nothing happens
    where CUDA_VISIBLE_DEVICES is already set, by SLURM or by the launcher of a multi-GPU job), then
    this process's GPU, cuda:LOCAL_RANK (cuda:0 outside torchrun), or the CPU where CUDA is missing.
    Call it before anything starts CUDA, so that the claim can still choose the GPUs.
    """
    if gpus == 0:
        return torch.device("cpu")
    _, world_size, local_rank = process_ranks()
    if gpus and world_size == 1:
        claim_gpus(gpus)
    if not torch.cuda.is_available():
        if gpus:
            log.warning("%d GPU(s) asked for but CUDA is not available: computing on the CPU", gpus)
        return torch.device("cpu")
    if gpus and gpus > world_size:
        log.warning("%d GPUs reserved but %d process(es) use one each: start a multi-GPU job with "
                    "python -m workflow_scripts.devices --gpus N -- COMMAND ...", gpus, world_size)
    return torch.device("cuda", local_rank)


def autocast(device: torch.device):
    """bf16 autocast on GPU; full precision on CPU (bf16 matmuls are slow on most CPUs)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
