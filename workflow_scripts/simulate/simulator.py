"""The simulator's commands: one dataset's h5ad and truth file, the gene label file of the planted
dosage genes, and the world's gene programs as gene sets. Each draws the world from the seed and
the settings alone, so every file of one configuration describes the same world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core import truths
from ..core.errors import InputError
from ..core.outputs import atomic_path, write_json, write_tsv
from .datasets import DATASET_BUILDERS
from .settings import SimulationSettings
from .world import world_from_settings

LABELLED_GENES = (truths.DOSAGE_SENSITIVE_GENES, truths.DOSAGE_INSENSITIVE_GENES)  # the gene label file's classes


def simulate_dataset(
    name: str, settings: SimulationSettings, seed: int, output_h5ad: str | Path, output_truth: str | Path
) -> None:
    """Simulate one named dataset from the seeded world; write the h5ad and its truth JSON atomically."""
    if name not in DATASET_BUILDERS:
        raise InputError(
            f"datasets.{name}",
            f"no simulator for a dataset named '{name}'",
            f"use one of {sorted(DATASET_BUILDERS)} or give the dataset source: h5ad with a path",
        )
    world = world_from_settings(settings, seed)
    dataset = DATASET_BUILDERS[name](world, settings, seed)
    truth = {
        truths.DATASET.key: name,
        truths.SEED.key: seed,
        truths.SIMULATION.key: settings.as_dict(),
        truths.WORLD.key: world.truth(),
        **dataset.truth,
    }
    truths.check_record(name, truth)
    with atomic_path(output_h5ad) as temporary:
        dataset.adata.write_h5ad(temporary)
    write_json(truth, output_truth)


def write_dosage_gene_labels(settings: SimulationSettings, seed: int, output_tsv: str | Path) -> None:
    """Write the world's planted dosage-sensitive and -insensitive genes as a gene label TSV
    (ensembl_id, label), the gene classification task's ground truth, sorted by Ensembl ID."""
    if settings.dosage_genes.n_per_class < 1:
        raise InputError(
            "simulation.dosage_genes.n_per_class",
            "is 0, so the world plants no dosage genes to label",
            "set n_per_class to at least the number of gene folds (e.g. 60)",
        )
    record = {truths.WORLD.key: world_from_settings(settings, seed).truth()}
    genes = {truth.label: truth.read(record) for truth in LABELLED_GENES}
    labels = pd.DataFrame(
        {
            "ensembl_id": [gene for members in genes.values() for gene in members],
            "label": [label for label, members in genes.items() for _ in members],
        }
    )
    write_tsv(labels.sort_values("ensembl_id", ignore_index=True), output_tsv)


def write_gene_sets(settings: SimulationSettings, seed: int, output_gmt: str | Path) -> None:
    """Write the world's gene programs as a GMT file (name, description, Ensembl IDs), the gene sets
    of pathway masking on the simulated corpus."""
    world = world_from_settings(settings, seed)
    lines = [
        "\t".join([program.name, f"simulated gene program (strength {program.strength:.4f})",
                   *world.gene_ids[np.sort(program.genes)]])
        for program in world.programs
    ]
    with atomic_path(output_gmt) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
