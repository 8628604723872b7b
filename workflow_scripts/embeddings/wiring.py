"""What rules/embeddings.smk reads from the validated config: which models are embedded, from which
checkpoint, and the embeddings settings every job of the stage gets as one JSON argument.

Methods that take `wildcards` (and `input`) are Snakemake input and params functions.
"""

from __future__ import annotations

from typing import Any

from ..core.wiring import Workflow, as_json
from .settings import EmbeddingSettings

FINETUNED, RANDOM_INIT, PCA = "finetuned", "random_init", "pca"


class EmbeddingWiring:
    """The embeddings section as the rules read it; `models` are the {model} wildcard's values."""

    def __init__(self, config: dict[str, Any], workflow: Workflow) -> None:
        self.workflow = workflow
        self.settings = EmbeddingSettings.from_config(config["embeddings"], "config: embeddings")
        self.settings_json = as_json(config["embeddings"])
        self.enabled = self.settings.dataset is not None
        self.models = ["pretrained", RANDOM_INIT] + ([FINETUNED] if self.settings.finetuned else [])
        self.scored = [*self.models, PCA]  # the order of the table's rows and the UMAP grid's columns

    def checkpoint_inputs(self, wildcards) -> list[str]:
        """The model an embedding is taken from: the fine-tuned fold's, or the pretraining checkpoint."""
        if wildcards.model == FINETUNED:
            return [self.settings.finetuned.directory]
        return self.workflow.checkpoint_inputs()

    def checkpoint(self, wildcards, input) -> str:
        if wildcards.model == FINETUNED:
            return input.checkpoint[0]
        return self.workflow.checkpoint_of(wildcards, input)

    @staticmethod
    def init(wildcards) -> str:
        """random_init: the checkpoint's architecture with random weights, the control."""
        return "random" if wildcards.model == RANDOM_INIT else "pretrained"

    def labelled_embeddings(self, wildcards, input) -> str:
        """[name, h5ad] of every scored embedding (JSON), for score_embeddings."""
        return as_json([[name, path] for name, path in zip(self.scored, input)])
