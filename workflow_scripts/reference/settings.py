"""Settings of the reference stage's jobs."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings


@dataclass(frozen=True)
class ReferenceSettings(Settings):
    """`reference`: where the medians and the token dictionary come from (corpus, geneformer_v1, or a file)."""

    medians: str
    token_dictionary: str
