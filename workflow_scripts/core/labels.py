"""Label names shared by the simulator and the real-data readers: the dosage gene classes and sci-Plex doses."""

from __future__ import annotations

DOSAGE_SENSITIVE, DOSAGE_INSENSITIVE = "dosage_sensitive", "dosage_insensitive"  # gene label file classes


def dose_label(dose: float) -> str:
    """The obs['dose'] label of a dose in µM: 0, 0.1, 1, 25 (no trailing zeros)."""
    return f"{dose:g}"
