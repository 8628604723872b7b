"""Baseline settings: one class per section of the schema's `baselines`, keyed by the method kind."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings


@dataclass(frozen=True)
class PcaForestSettings(Settings):
    """baselines.pca_rf and baselines.gene_pca_rf: PCA components, then a random forest."""

    n_components: int
    n_estimators: int


@dataclass(frozen=True)
class HvgLogisticSettings(Settings):
    """baselines.logreg_hvg: highly variable genes, then logistic regression."""

    n_top_genes: int
    C: float
    max_iter: int


@dataclass(frozen=True)
class LogisticSettings(Settings):
    """baselines.gene_stats_logreg: logistic regression on expression statistics."""

    C: float
    max_iter: int
