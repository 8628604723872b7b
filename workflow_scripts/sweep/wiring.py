"""The sweep's experiments and files, as rules/common.smk and rules/sweep.smk read them.

Each size is an experiment of its own, `<experiment>_<n>_training_cells`: a copy of the swept gene
experiment with `n_training_cells` set and only the swept methods, added to the config before the
rules are built, so folds, fine-tuning, summaries and resuming work for it as for any experiment.
"""

from __future__ import annotations

import copy
from typing import Any

from ..core.errors import InputError
from ..core.wiring import as_json
from .settings import TrainingSizeSweepSettings

SECTION = "training_size_sweep"


def size_experiment(experiment: str, n_training_cells: int) -> str:
    return f"{experiment}_{n_training_cells}_training_cells"


def add_size_experiments(config: dict[str, Any]) -> list[str]:
    """Add one experiment per swept size to config['experiments'] (validated config); return their names."""
    settings = TrainingSizeSweepSettings.from_config(config[SECTION], f"config: {SECTION}")
    if settings.experiment is None:
        return []
    base = config["experiments"].get(settings.experiment)
    if base is None or base["task"] != "gene_classification":
        raise InputError(f"config: {SECTION}.experiment", f"'{settings.experiment}' is not a gene task here",
                         "name a gene_classification experiment of this configuration, or null")
    finetuned = [name for name, method in base["methods"].items() if method["kind"] == "finetune"]
    methods = finetuned if settings.methods is None else settings.methods
    unknown = sorted(set(methods) - set(finetuned))
    if unknown or not methods:
        raise InputError(f"config: {SECTION}.methods", f"{unknown or methods} are not fine-tuned methods of "
                         f"{settings.experiment}", f"use some of {finetuned}, or null for all")
    names = []
    for n_training_cells in settings.n_training_cells:
        entry = copy.deepcopy(base)
        entry["n_training_cells"] = n_training_cells
        entry["methods"] = {name: base["methods"][name] for name in methods}
        entry["reference_method"] = None
        names.append(size_experiment(settings.experiment, n_training_cells))
        config["experiments"][names[-1]] = entry
    return names


class SweepWiring:
    """The sweep's table inputs: each size's summary and cells, and the full experiment's."""

    def __init__(self, config: dict[str, Any], size_experiments: list[str]) -> None:
        self.experiment = config[SECTION]["experiment"]
        self.runs = ([self.experiment] if self.experiment else []) + size_experiments

    @property
    def enabled(self) -> bool:
        return self.experiment is not None

    def files(self, name: str) -> list[str]:
        return [f"results/{experiment}/{name}" for experiment in self.runs]

    def labelled(self, wildcards, input) -> str:
        """[experiment, summary.csv, cells.tsv] per run (the full experiment first), JSON."""
        return as_json([[experiment, summary, cells]
                        for experiment, summary, cells in zip(self.runs, input.summaries, input.cells)])
