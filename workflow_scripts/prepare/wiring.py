"""What the prepare stage's rules (rules/prepare.smk) read from the config: the files to download and
the datasets to prepare from a user's h5ad or from downloads."""

from __future__ import annotations

from typing import Any

from ..core.wiring import SIMULATED

CHECKSUM_RECORD = "results/downloads/checksums.tsv"  # trust-on-first-use checksums of unpinned files


class PrepareWiring:
    """The validated config's downloads and real datasets as the prepare rules read them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.prepared = [name for name, entry in config["datasets"].items() if entry["source"] != SIMULATED]
        # results/downloads/{source}/{filename}: source = a downloaded dataset, the checkpoint or gene labels
        self.downloads = {
            name: {file["filename"]: file for file in entry["files"].values()}
            for name, entry in config["datasets"].items()
            if entry["source"] == "download"
        }
        self.downloads["checkpoint"] = {file["filename"]: file for file in config["model"]["download"].values()}
        self.downloads["gene_labels"] = {
            entry["gene_labels"]["filename"]: entry["gene_labels"]
            for entry in config["experiments"].values()
            if isinstance(entry["gene_labels"], dict)
        }

    def download_sources(self) -> list[str]:
        """The sources with files to download."""
        return [source for source, files in self.downloads.items() if files]

    def downloaded_file(self, wildcards) -> dict[str, Any]:
        """The config entry (url, filename, sha256, size) of one file to download."""
        return self.downloads[wildcards.source][wildcards.filename]

    def source_files(self, wildcards) -> dict[str, str]:
        """File key -> path of the files a dataset is prepared from (the user's h5ad, or the downloads)."""
        entry = self.config["datasets"][wildcards.dataset]
        if entry["source"] == "h5ad":
            return {"h5ad": entry["path"]}
        return {key: f"results/downloads/{wildcards.dataset}/{file['filename']}" for key, file in entry["files"].items()}

    def dataset(self, wildcards) -> dict[str, Any]:
        return self.config["datasets"][wildcards.dataset]
