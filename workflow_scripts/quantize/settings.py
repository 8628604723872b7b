"""The `quantization` section of the config (core/schema.yaml) as the quantization jobs read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.settings import Settings


@dataclass(frozen=True)
class QuantizedModel(Settings):
    """A fine-tuned method of a cell task; each of its folds in `folds` is benchmarked."""

    experiment: str
    method: str


@dataclass(frozen=True)
class QuantizationSettings(Settings):
    models: list[QuantizedModel]
    folds: list[int]
    variants: list[Literal["fp32", "int8_dynamic", "bf16", "fp16"]]
    batch_sizes: list[int]
    repeats: int
