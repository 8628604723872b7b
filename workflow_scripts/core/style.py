"""Figure conventions every stage shares: resolution, one colour per method, PNG + PDF saved atomically.

Figures are matplotlib Figure objects, never pyplot: no display and no global figure state."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from .outputs import atomic_path

DPI = 150


def method_colours(methods: list[str]) -> dict[str, tuple]:
    """One tab10 colour per method, fixed by the order methods are given."""
    palette = matplotlib.colormaps["tab10"].colors
    return {method: palette[position % len(palette)] for position, method in enumerate(methods)}


def save_figure(figure: Figure, output_dir: Path, stem: str) -> list[Path]:
    """Write the figure as PNG and PDF, each atomically."""
    paths = [output_dir / f"{stem}.png", output_dir / f"{stem}.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=DPI, bbox_inches="tight")
    return paths
