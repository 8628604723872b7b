"""UMAP grids of cell embeddings, one colour per category across panels."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

MAX_LEGEND_CATEGORIES = 30


def category_colours(categories: list[str]) -> dict[str, tuple]:
    """tab10 / tab20 colours for up to 20 categories, evenly spaced turbo colours beyond."""
    if len(categories) <= 20:
        palette = matplotlib.colormaps["tab10" if len(categories) <= 10 else "tab20"].colors
    else:
        palette = [tuple(colour) for colour in matplotlib.colormaps["turbo"](np.linspace(0, 1, len(categories)))]
    return dict(zip(categories, palette))


def plot_umap_grid(umaps: dict[str, np.ndarray],
                   rows: list[tuple[str, dict[str, np.ndarray], dict[str, str]]], seed: int = 0) -> Figure:
    """UMAPs side by side: one column per embedding (`umaps`: name -> cells x 2), one row per colouring
    (colour_by, name -> category per cell, name -> panel title). A category keeps one colour across a
    row; cells are drawn in a seeded random order so no category hides another."""
    names = list(umaps)
    figure = Figure(figsize=(4.2 * len(names) + 2.0, 4.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(names), squeeze=False)
    for row_axes, (colour_by, categories_by_name, titles) in zip(axes, rows):
        categories = sorted(set().union(*(np.unique(categories_by_name[name]).tolist() for name in names)))
        colours = category_colours(categories)
        for axis, name in zip(row_axes, names):
            coordinates, categories_of_cells = umaps[name], categories_by_name[name]
            order = np.random.default_rng(seed).permutation(len(coordinates))
            codes = pd.Categorical(categories_of_cells[order], categories=categories).codes
            palette = np.array([colours[category] for category in categories])
            axis.scatter(coordinates[order, 0], coordinates[order, 1], c=palette[codes],
                         s=float(np.clip(3e4 / len(coordinates), 1, 20)), linewidths=0, rasterized=True)
            axis.set(xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2")
            axis.set_title(titles[name], fontsize=9)
        if len(categories) <= MAX_LEGEND_CATEGORIES:
            handles = [matplotlib.lines.Line2D([], [], marker="o", linestyle="", color=colours[category],
                                               label=category) for category in categories]
            row_axes[-1].legend(handles=handles, title=colour_by, fontsize=7, title_fontsize=8, frameon=False,
                                loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            row_axes[-1].annotate(f"{colour_by}: {len(categories)} categories", (1.02, 0.5),
                                  xycoords="axes fraction", va="center", fontsize=8)
    return figure
