"""Fine-tuning settings: the schema's `finetuning` section merged with a method's overrides
(core/config.py::method_settings), as one job receives them."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings


@dataclass(frozen=True)
class FinetuningSettings(Settings):
    """One method's fine-tuning recipe (schema `definitions.finetuning`)."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    learning_rate: float
    lr_scheduler: str
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    freeze_layers: int
    freeze_embeddings: bool
    head_only_epochs: int
    loss: str
    focal_gamma: float
    focal_alpha: float | str | None
    upsample: bool
    upsample_fraction: float
    init: str
    checkpoint_every_steps: int
