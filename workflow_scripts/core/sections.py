"""Settings of the schema sections that jobs of several stages read (tokenizer, checks).

A stage's own sections live in workflow_scripts/<stage>/settings.py; these are here because the
reference, tokenization, preflight and pretraining jobs share them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings


@dataclass(frozen=True)
class TokenizerSettings(Settings):
    """`tokenizer`: the rank-value encoding, and the cells per streamed chunk of every job that streams counts."""

    model_input_size: int
    special_tokens: bool
    chunk_size: int


@dataclass(frozen=True)
class ChecksSettings(Settings):
    """`checks`: the floors below which bad input stops the run, or is warned of."""

    min_genes_in_vocabulary: int
    min_genes_per_class: int
    min_count_share_in_vocabulary: float
