"""What rules/quantize.smk reads from the validated config: the (experiment, method, fold) runs
benchmarked, their tables, and each job's settings.

Methods that take `wildcards` (and `input`) are Snakemake input and params functions.
"""

from __future__ import annotations

from typing import Any

from ..core.wiring import as_json
from .settings import QuantizationSettings


class QuantizationWiring:
    """The quantization section as the rules read it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.section = config["quantization"]
        self.settings = QuantizationSettings.from_config(self.section, "config: quantization")
        self.runs = [(model.experiment, model.method, fold)
                     for model in self.settings.models for fold in self.settings.folds]
        self.tables = [f"results/{experiment}/{method}/fold_{fold}/quantization.tsv"
                       for experiment, method, fold in self.runs]

    def job_settings(self, wildcards) -> str:
        """The section with only this job's model and fold (JSON): adding a model or a fold does not
        rerun the benchmarks already made."""
        return as_json({**self.section, "models": [{"experiment": wildcards.experiment, "method": wildcards.method}],
                        "folds": [int(wildcards.fold)]})

    def labelled_tables(self, wildcards, input) -> str:
        """[experiment, method, fold, path] of every benchmark table (JSON), for collect_quantization."""
        return as_json([[*run, path] for run, path in zip(self.runs, input)])
