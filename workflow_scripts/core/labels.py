"""Label names shared by the simulator and the real-data readers: the gene label files' classes and sci-Plex doses."""

from __future__ import annotations

DOSAGE_SENSITIVE, DOSAGE_INSENSITIVE = "dosage_sensitive", "dosage_insensitive"  # gene label file classes
CENTRAL, PERIPHERAL = "central", "peripheral"  # network hub vs leaf factors
TARGET, NON_TARGET = "target", "non_target"  # genes an activating regulator raises, or not
BIVALENT, UNMETHYLATED, LYS4_ONLY = "bivalent", "unmethylated", "lys4_only"  # promoter marks in stem cells
LONG_RANGE, SHORT_RANGE = "long_range", "short_range"  # TFs acting through an intermediate program, or directly


def dose_label(dose: float) -> str:
    """The obs['dose'] label of a dose in µM: 0, 0.1, 1, 25 (no trailing zeros)."""
    return f"{dose:g}"
