"""Where the simulator's planted genes rank in perturb's tables (no torch: the truth table is a data job)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import truths
from ..core.errors import InputError
from ..core.outputs import atomic_path
from .tables import (
    GENE,
    JOIN,
    combination_row,
    gene_shifts_of,
    pair_gene_synergy,
    targets_against_others,
)


def _rank(values: pd.Series, value: float, is_one_of_values: bool) -> tuple[float, float]:
    """1 + the number of `values` larger than value (NaN for NaN), and 100 * rank / n, n counting
    the value itself when it is not one of them (a combination placed among single genes)."""
    if not np.isfinite(value):
        return np.nan, np.nan
    rank = 1 + int((values.dropna() > value).sum())
    return float(rank), 100.0 * rank / max(values.notna().sum() + (not is_one_of_values), 1)


def perturbation_truth(results_tsvs: list[str], gene_shifts_tsvs: list[str], truth_json: str | Path,
                       output_csv: str | Path) -> None:
    """Where the simulator's planted genes rank among the tested genes, whether the driver's targets
    (and the pair's) shift more than other genes when it (the pair) is deleted or overexpressed, and
    the pair's synergy: one tidy CSV (role, genes, analysis, direction, metric, value) over every
    run given (one per analysis; results_tsvs[i] pairs with gene_shifts_tsvs[i]).

    rank: 1 = the largest shift among the ranked tested genes (perturbed in >= min_cells cells);
    top_percent = 100 * rank / n (a gene in the top 5% has top_percent <= 5). A planted gene
    perturbed in fewer cells is reported with `ranked` 0 and no rank. Targets: one-sided
    Mann-Whitney U of the targets' mean gene shifts against the other affected genes', over the
    cells where each affected gene kept its position (p_targets_greater; *_all_positions: every
    cell). Pair: cell / goal synergy and their percentile among random pairs of null genes; target
    synergy = the joint deletion's shift of each co-bound target minus the sum of the members'
    shifts of it on the same cells, against the same quantity for the other affected genes.
    """
    if len(results_tsvs) != len(gene_shifts_tsvs) or not results_tsvs:
        raise InputError("perturbation_truth", f"{len(results_tsvs)} results files for {len(gene_shifts_tsvs)} "
                         "gene shift files", "give one gene shift file per results file, in the same order")
    truth = json.loads(Path(truth_json).read_text())
    if not (truths.DRIVER.held_by(truth) and truths.COOPERATING_PAIR.held_by(truth)):
        raise InputError(str(truth_json), "holds no planted driver / cooperating pair",
                         "use the truth file of the simulated cardiomyocytes")
    records = [record for results_tsv, shifts_tsv in zip(results_tsvs, gene_shifts_tsvs)
               for record in _truth_records(pd.read_csv(results_tsv, sep="\t", keep_default_na=False, na_values=[""]),
                                            pd.read_csv(shifts_tsv, sep="\t", keep_default_na=False,
                                                        na_values=[""]), truth)]
    with atomic_path(output_csv) as temporary:
        pd.DataFrame.from_records(records).to_csv(temporary, index=False, float_format="%.6g")


def _truth_records(results: pd.DataFrame, shifts: pd.DataFrame, truth: dict) -> list[dict]:
    """perturbation_truth's rows for one analysis's results."""
    direction = str(results["direction"].iloc[0]) if len(results) else ""
    analysis = str(results["analysis"].iloc[0]) if len(results) and results["analysis"].iloc[0] else direction
    genes = results[results["kind"] == GENE].set_index("genes")
    ranked = genes[genes["ranked"].astype(bool)]
    driver, pair, controls = (truths.DRIVER_GENE.read(truth), truths.PAIR_GENES.read(truth),
                              truths.CONTROL_GENES.read(truth))
    records: list[dict] = []

    def add(role: str, genes: str, metric: str, value: float) -> None:
        records.append({"role": role, "genes": genes, "analysis": analysis, "direction": direction, "metric": metric,
                        "value": value})

    def placement(role: str, label: str, row: pd.Series | None, is_gene: bool) -> dict[str, float]:
        """Add the row's shifts, ranks and FDRs; return its top_percent per shift."""
        top = {}
        is_ranked = row is not None and bool(row["ranked"])
        add(role, label, "tested", float(row is not None))
        add(role, label, "ranked", float(is_ranked))
        add(role, label, "n_tested_genes", float(len(ranked)))
        add(role, label, "n_cells", np.nan if row is None else float(row["n_cells"]))
        for column in ("cell_shift", "goal_shift"):
            value = float(row[column]) if row is not None else np.nan
            rank, top[column] = _rank(ranked[column], value if is_ranked else np.nan, is_gene)
            add(role, label, column, value)
            add(role, label, f"rank_{column}", rank)
            add(role, label, f"top_percent_{column}", top[column])
            add(role, label, f"fdr_{column}", np.nan if row is None else float(row[f"fdr_{column}"]))
        return top

    def gene_row(gene: str) -> pd.Series | None:
        return genes.loc[gene] if gene in genes.index else None

    placement("driver", driver, gene_row(driver), True)
    for gene in pair:
        placement("pair_member", gene, gene_row(gene), True)
    pair_row = combination_row(results, pair)
    pair_label = pair_row["genes"] if pair_row is not None else JOIN.join(pair)
    placement("pair", pair_label, pair_row, False)
    for column in ("synergy", "goal_synergy", "synergy_percentile", "goal_synergy_percentile", "synergy_null_mean"):
        add("pair", pair_label, column, np.nan if pair_row is None else float(pair_row[column]))
    control_top = [placement("control", gene, gene_row(gene), True)["cell_shift"] for gene in controls]
    add("controls", JOIN.join(controls), "n_ranked", float(np.isfinite(control_top).sum()))
    add("controls", JOIN.join(controls), "median_top_percent_cell_shift",
        float(np.nanmedian(control_top)) if np.isfinite(control_top).any() else np.nan)
    for role, perturbed, targets in (("driver_targets", driver, truths.DRIVER_TARGETS.read(truth)),
                                     ("pair_targets", pair_label, truths.PAIR_TARGETS.read(truth))):
        for column, suffix in (("mean_shift_unmoved", ""), ("mean_shift", "_all_positions")):
            names = ("n_targets", "n_non_targets", "mean_shift_targets", "mean_shift_non_targets", "p_targets_greater")
            for name, value in zip(names, targets_against_others(gene_shifts_of(shifts, perturbed, column), targets)):
                add(role, perturbed, f"{name}{suffix}", value)
    names = ("n_targets_synergy", "n_non_targets_synergy", "target_synergy", "non_target_synergy",
             "p_target_synergy_greater")
    synergy = pair_gene_synergy(shifts, pair_label)
    for name, value in zip(names, targets_against_others(synergy, truths.PAIR_TARGETS.read(truth))):
        add("pair_targets", pair_label, name, value)
    return records
