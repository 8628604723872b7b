"""The `perturbation` section of the config (core/schema.yaml) as the perturbation jobs read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.settings import FoldModel, Settings


@dataclass(frozen=True)
class AnalysisSettings(Settings):
    """One analysis: which cells are perturbed, how, toward which state, in which model."""

    start_state: str
    goal_state: str | None
    direction: Literal["delete", "overexpress"]
    model: Literal["finetuned", "pretrained"]


@dataclass(frozen=True)
class PerturbationSettings(Settings):
    model: FoldModel | None
    state_column: str | None
    analyses: dict[str, AnalysisSettings]
    genes: list[str]
    combinations: list[list[str]]
    max_cells: int
    max_genes: int
    min_cell_fraction: float
    n_null_genes: int
    n_null_pairs: int
    min_cells: int
    layer: int
    batch_size: int
