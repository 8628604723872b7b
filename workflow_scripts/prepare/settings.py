"""Settings of the prepare stage's jobs: one file to download, one dataset to prepare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.settings import Settings


@dataclass(frozen=True)
class DownloadSettings(Settings):
    """A file to fetch (a dataset's, the checkpoint's or a gene label file): verified against sha256 and
    size where given, else against the checksum recorded on first use."""

    url: str
    filename: str
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class DatasetSettings(Settings):
    """A `datasets` entry: its source, the file or downloads it is read from, and the preparer (format) with
    its keyword arguments (options)."""

    source: str
    path: str | None
    format: str
    files: dict[str, DownloadSettings]
    options: dict[str, Any]
