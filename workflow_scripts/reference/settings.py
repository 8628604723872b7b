"""Settings of the reference stage's jobs."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings

CORPUS = "corpus"  # computed from datasets.corpus
BUILTIN_REFERENCES = {"geneformer_v1": ("geneformer_v1_tokens", "geneformer_v1_medians")}  # shipped


@dataclass(frozen=True)
class ReferenceSettings(Settings):
    """`reference`: where the medians and the token dictionary come from (corpus, geneformer_v1, or a file)."""

    medians: str
    token_dictionary: str

    @property
    def user_files(self) -> list[str]:
        """The user's own dictionary files: inputs of the job, so editing one rebuilds the dictionaries."""
        sources = dict.fromkeys((self.medians, self.token_dictionary))
        return [source for source in sources if source != CORPUS and source not in BUILTIN_REFERENCES]

    @property
    def uses_corpus(self) -> bool:
        return CORPUS in (self.medians, self.token_dictionary)
