"""What the pretrain rule (and the ablation's pretraining, which reuses it) reads from the config."""

from __future__ import annotations

from typing import Any

from ..core.errors import InputError
from ..core.wiring import SIMULATED, SIMULATED_GENE_SETS


class PretrainWiring:
    """The validated config as the pretraining rules read it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def gene_sets_input(self, pretraining: dict[str, Any]) -> list[str]:
        """The gene set file pathway masking reads ([] for other strategies): the user's GMT, or the
        simulator's gene programs, which only describe a simulated corpus."""
        masking = pretraining["masking"]
        if masking["strategy"] != "pathway":
            return []
        if masking["gene_sets"] != SIMULATED:
            return [masking["gene_sets"]]
        if self.config["datasets"].get("corpus", {}).get("source") != SIMULATED:
            raise InputError(
                "config: pretraining.masking.gene_sets",
                "simulated gene programs describe only a simulated corpus",
                "give a GMT file of gene sets (Ensembl IDs or symbols)",
            )
        return [SIMULATED_GENE_SETS]
