"""What rules/perturb.smk reads from the validated config: the analyses, the dataset and model they
perturb, the simulator's truth file where the data are simulated, and each job's settings.

Methods that take `wildcards` (and `input`) are Snakemake input and params functions.
"""

from __future__ import annotations

from typing import Any

from ..core.wiring import SIMULATED, Workflow, as_json
from .settings import PerturbationSettings

PRETRAINED = "pretrained"
FIGURES = ("shifts", "top_genes", "combinations")
TRUTH_FIGURE = "targets"  # drawn only with a truth file


class PerturbationWiring:
    """The perturbation section as the rules read it; `analyses` are the {analysis} wildcard's values
    (none when perturbation.model is null: no perturbation stage)."""

    def __init__(self, config: dict[str, Any], workflow: Workflow) -> None:
        self.workflow = workflow
        self.section = config["perturbation"]
        self.settings = PerturbationSettings.from_config(self.section, "config: perturbation")
        model = self.settings.model
        self.enabled = model is not None
        self.analyses = list(self.settings.analyses) if self.enabled else []
        self.dataset = config["experiments"][model.experiment]["dataset"] if self.enabled else None
        self.truth = (
            f"results/data/{self.dataset}.truth.json"
            if self.enabled and config["datasets"][self.dataset]["source"] == SIMULATED
            else None
        )
        self.figures = [f"results/figures/perturbation_{name}.png"
                        for name in (*FIGURES, *([TRUTH_FIGURE] if self.truth else []))]

    def uses_pretrained(self, wildcards) -> bool:
        return self.settings.analyses[wildcards.analysis].model == PRETRAINED

    def checkpoint_inputs(self, wildcards) -> list[str]:
        """The model an analysis perturbs: the fine-tuned fold's model directory, or the pretraining checkpoint."""
        if self.uses_pretrained(wildcards):
            return self.workflow.checkpoint_inputs()
        return [self.settings.model.directory]

    def checkpoint(self, wildcards, input) -> str:
        if self.uses_pretrained(wildcards):
            return self.workflow.checkpoint_of(wildcards, input)
        return input.checkpoint[0]

    def job_settings(self, wildcards) -> str:
        """The section with only this job's analysis (JSON): editing another analysis does not rerun it."""
        return as_json({**self.section, "analyses": {wildcards.analysis: self.section["analyses"][wildcards.analysis]}})

    @staticmethod
    def truth_flag(wildcards, input) -> str:
        """--truth-json with the simulator's truth file, when the data are simulated."""
        return f"--truth-json {input.truth[0]}" if input.truth else ""
