"""Settings of the pretraining job: the model to build and how to pretrain it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.settings import Settings

CHECKPOINT_KEYS = ("checkpoint", "download")  # of `model`: where a given model comes from, not how to build one


def model_to_pretrain(model: dict[str, Any]) -> dict[str, Any]:
    """The `model` section as ModelSettings takes it: CHECKPOINT_KEYS left out."""
    return {key: value for key, value in model.items() if key not in CHECKPOINT_KEYS}


@dataclass(frozen=True)
class ModelSettings(Settings):
    """`model` less CHECKPOINT_KEYS: the shape and regularisation of a model pretrained here."""

    preset: str
    num_hidden_layers: int | None
    hidden_size: int | None
    num_attention_heads: int | None
    intermediate_size: int | None
    architecture: str
    embedding_size: int | None
    share_layers: bool
    hidden_act: str
    layer_norm_eps: float
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float
    initializer_range: float


@dataclass(frozen=True)
class MaskingSettings(Settings):
    """`pretraining.masking`: which gene tokens are selected, and how they are corrupted."""

    strategy: str
    mask_probability: float
    mask_token_fraction: float
    random_token_fraction: float
    schedule: str
    start_probability: float
    end_probability: float
    gene_sets: str


@dataclass(frozen=True)
class PretrainingSettings(Settings):
    """`pretraining`: the masked-LM training recipe."""

    epochs: int
    batch_size: int
    learning_rate: float
    lr_scheduler: str
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    validation_fraction: float
    masking: MaskingSettings
    checkpoint_every_steps: int
