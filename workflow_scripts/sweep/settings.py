"""The `training_size_sweep` section of the config (core/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings


@dataclass(frozen=True)
class TrainingSizeSweepSettings(Settings):
    """Which gene experiment is fine-tuned again on each number of training cells, and with which of its
    fine-tuned methods (None: all of them); its baselines, trained on all cells, are the reference lines."""

    experiment: str | None
    methods: list[str] | None
    n_training_cells: list[int]
