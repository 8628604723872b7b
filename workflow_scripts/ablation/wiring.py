"""What the pretraining ablation's rules (rules/ablation.smk) read from the config: its variants,
each checked when the workflow is read, and its downstream recipe, checked when first asked for."""

from __future__ import annotations

from typing import Any

from .variants import downstream_finetuning, evaluation_masking, variant_settings


class AblationWiring:
    """The validated config's `ablation` as the ablation's rules read it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.downstream = config["ablation"]["downstream"]
        self.variants = list(config["ablation"]["variants"])
        self.settings = {name: variant_settings(config, name) for name in self.variants}  # each variant checked
        self.folds = range(self.downstream["n_folds"])
        self.evaluation = evaluation_masking(config)  # every variant's held-out loss masks the same cells alike
        self._finetuning: dict[str, Any] | None = None

    def finetuning(self) -> dict[str, Any]:
        """The downstream recipe, checked once, when the first ablation job is planned (a configuration
        without the downstream experiment is fine while no ablation job is asked for)."""
        if self._finetuning is None:
            self._finetuning = downstream_finetuning(self.config, self.settings)
        return self._finetuning

    def dataset(self) -> str:
        self.finetuning()
        return self.config["experiments"][self.downstream["experiment"]]["dataset"]

    def preflight(self) -> str:
        self.finetuning()
        return f"results/preflight/{self.downstream['experiment']}.json"

