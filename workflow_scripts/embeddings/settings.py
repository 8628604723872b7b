"""The `embeddings` section of the config (core/schema.yaml) as the embedding jobs read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.settings import FoldModel, Settings


@dataclass(frozen=True)
class EmbeddingSettings(Settings):
    dataset: str | None
    label_column: str | None
    batch_column: str | None
    finetuned: FoldModel | None
    max_cells: int | None
    layer: int
    dtype: Literal["fp32", "fp16", "bf16"]
    batch_size: int
    pca_components: int

    @property
    def obs_columns(self) -> list[str]:
        """The obs columns the embeddings carry and are scored on: the label, and the batch when given."""
        return [column for column in (self.label_column, self.batch_column) if column]
