"""The simulator's commands: one dataset's h5ad and truth file, the gene label file of a planted
label set, and the world's gene programs as gene sets. Each draws the world from the seed and the
settings alone, so every file of one configuration describes the same world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import truths
from ..core.errors import InputError
from ..core.outputs import atomic_path, write_json, write_tsv
from .datasets import DATASET_BUILDERS
from .settings import SimulationSettings
from .world import world_from_settings


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


def write_gene_labels(label_set: str, settings: SimulationSettings, seed: int, output_tsv: str | Path,
                      truth_json: str | Path | None = None) -> None:
    """Write a label set's two classes of planted genes as a gene label TSV (ensembl_id, label), the
    gene classification task's ground truth, sorted by Ensembl ID. The world's classes (dosage) are
    drawn from the settings; a dataset's are read from its truth file, so that dataset is not redrawn."""
    if label_set not in truths.GENE_LABEL_SETS:
        raise InputError("--label-set", f"'{label_set}' is not a simulated label set",
                         f"use one of {sorted(truths.GENE_LABEL_SETS)}")
    labelled = truths.GENE_LABEL_SETS[label_set]
    if labelled.dataset is None:
        record = {truths.WORLD.key: world_from_settings(settings, seed).truth()}
    elif truth_json is None:
        raise InputError("--truth-json", f"label set '{label_set}' is planted in dataset '{labelled.dataset}'",
                         f"pass results/data/{labelled.dataset}.truth.json")
    else:
        record = json.loads(Path(truth_json).read_text())
        if truths.DATASET.read(record) != labelled.dataset:
            raise InputError(str(truth_json), f"is the truth file of '{truths.DATASET.read(record)}', not of "
                             f"'{labelled.dataset}' where label set '{label_set}' is planted",
                             f"pass results/data/{labelled.dataset}.truth.json")
    genes = {truth.label: truth.read(record) for truth in labelled.classes}
    if not all(genes.values()):
        raise InputError(labelled.size_key, "is 0, so the simulator plants no genes to label",
                         "set it to at least the number of gene folds (e.g. 60)")
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
