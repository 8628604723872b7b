"""Reading perturb's gene shift tables (no torch: the figures' environment uses this too)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

JOIN = "+"  # a combination's genes in one cell of the tables, in the order given
COMBINATION = "combination"  # the results table's `kind` of a perturbed gene combination
GENE = "gene"  # the results table's `kind` of a tested gene perturbed alone


def combination_row(results: pd.DataFrame, genes: list[str]) -> pd.Series | None:
    """The results row of the combination of exactly these genes (in any order), if perturbed."""
    rows = results[(results["kind"] == COMBINATION)
                   & results["genes"].map(lambda label: sorted(label.split(JOIN)) == sorted(genes))]
    return rows.iloc[0] if len(rows) else None


def gene_shifts_of(shifts: pd.DataFrame, perturbed: str, column: str = "mean_shift_unmoved",
                   context: str = "") -> pd.Series:
    """One record's per-affected-gene shifts (a gene shift table's `column`, NaN dropped)."""
    in_context = shifts["context"].fillna("") == context
    return shifts[in_context & (shifts["perturbed"] == perturbed)].set_index("affected")[column].dropna()


def pair_gene_synergy(shifts: pd.DataFrame, combination: str) -> pd.Series:
    """Per affected gene: its shift when the combination is perturbed minus the sum of its shifts
    when each member is, on the combination's cells (unmoved positions; genes seen in all)."""
    joint = gene_shifts_of(shifts, combination)
    singles = [gene_shifts_of(shifts, gene, context=combination) for gene in combination.split(JOIN)]
    if joint.empty or any(single.empty for single in singles):
        return pd.Series(dtype=float)
    return (joint - sum(singles)).dropna()


def targets_against_others(values: pd.Series, targets: list[str]) -> tuple[float, float, float, float, float]:
    """Per-gene values (indexed by gene) of the targets against the other genes': their counts,
    means, and a one-sided Mann-Whitney U p that the targets' are larger (NaN where a side is empty)."""
    is_target = values.index.isin(targets)
    on_target, off_target = values.to_numpy()[is_target], values.to_numpy()[~is_target]
    both = len(on_target) > 0 and len(off_target) > 0
    return (float(len(on_target)), float(len(off_target)),
            float(on_target.mean()) if len(on_target) else np.nan,
            float(off_target.mean()) if len(off_target) else np.nan,
            float(mannwhitneyu(on_target, off_target, alternative="greater").pvalue) if both else np.nan)
