"""Baseline settings: one baseline method, its kind and that kind's section of the schema's `baselines`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from ..core.errors import InputError
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


OPTIONS_OF_KIND: dict[str, type[Settings]] = {
    "pca_rf": PcaForestSettings,
    "logreg_hvg": HvgLogisticSettings,
    "gene_pca_rf": PcaForestSettings,
    "gene_stats_logreg": LogisticSettings,
}


@dataclass(frozen=True)
class BaselineSettings(Settings):
    """A baseline method: its kind (schema `experiments.<name>.methods.<method>.kind`) and the kind's
    `baselines.<kind>` section as `options`, whose class the kind decides."""

    kind: str
    options: PcaForestSettings | HvgLogisticSettings | LogisticSettings

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str = "settings") -> Self:
        """`options` parsed by the kind's class (a union alone cannot say which), the rest as every Settings."""
        if isinstance(section, Mapping) and isinstance(section.get("options"), Mapping):
            kind = section.get("kind")
            if kind not in OPTIONS_OF_KIND:
                raise InputError(f"{where}.kind", f"'{kind}' is not a baseline", f"use one of {list(OPTIONS_OF_KIND)}")
            section = {**section, "options": OPTIONS_OF_KIND[kind].from_config(section["options"], f"{where}.options")}
        return super().from_config(section, where)
