"""Verified, resumable downloads of the datasets and checkpoints the workflow starts from.

Why this instead of a plain `urlretrieve`:
- verified: a file is only accepted when its size and sha256 match the config, so a corrupt or
  silently replaced upstream file stops the workflow here instead of skewing results later;
- resumable: bytes go to `<output>.part` and an interrupted download continues with an HTTP
  Range request, which matters for multi-gigabyte count matrices on flaky connections;
- no partial files: `<output>` only appears (atomic rename) after verification, so Snakemake
  never sees a truncated file that looks finished;
- trust on first use: sources without a published checksum get theirs recorded in a checksum
  TSV on the first download (with a warning that it was not verified); later downloads must
  match it, so an upstream change is noticed instead of silently mixed into a rerun.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..core.errors import InputError
from ..core.outputs import write_tsv
from .settings import DownloadSettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
RECORD_COLUMNS = ["url", "sha256", "size"]
RETRYABLE_HTTP_CODES = {408, 429}  # plus every 5xx
USER_AGENT = "geneformer-workflow-download/1"

_sleep = time.sleep  # tests replace this to record backoff delays without waiting


class _PermanentHTTPError(Exception):
    """An HTTP answer that retrying will not change (404, 403, ...)."""


def download_file(settings: DownloadSettings, output: str | Path, checksum_record: str | Path | None = None,
                  retries: int = 5, backoff_seconds: float = 2.0, timeout_seconds: float = 60.0) -> str:
    """Download settings.url to `output` (resuming `<output>.part`), verify it, and return its sha256."""
    url, sha256, size = settings.url, settings.sha256, settings.size
    output = Path(output)
    part = output.with_name(output.name + ".part")
    recorded = sha256 is None and checksum_record is not None
    if recorded:
        sha256, size = _recorded_checksum(Path(checksum_record), url, size)
    sha256 = sha256.lower() if sha256 else None

    if output.exists():
        actual_sha256, actual_size = _file_digest(output)
        problem = _mismatch(sha256, size, actual_sha256, actual_size)
        if problem is None:
            _record_first_use(checksum_record, url, sha256, actual_sha256, actual_size)
            return actual_sha256
        log.warning("%s exists but %s; downloading it again", output, problem)
        output.unlink()

    output.parent.mkdir(parents=True, exist_ok=True)
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the whole file: not a prefix of it
    _fetch_with_retries(url, part, output, retries, backoff_seconds, timeout_seconds)

    actual_sha256, actual_size = _file_digest(part)
    problem = _mismatch(sha256, size, actual_sha256, actual_size)
    if problem is not None:
        part.unlink()
        where = f"the checksum record {checksum_record}" if recorded else "the config"
        raise InputError(url, f"downloaded file {problem}",
                         f"re-run to download it again; if the source changed on purpose, "
                         f"update its sha256/size in {where}")
    os.replace(part, output)
    _record_first_use(checksum_record, url, sha256, actual_sha256, actual_size)
    log.info("downloaded %s to %s (%d bytes, sha256 %s)", url, output, actual_size, actual_sha256)
    return actual_sha256


def _fetch_with_retries(url: str, part: Path, output: Path, retries: int, backoff_seconds: float,
                        timeout_seconds: float) -> None:
    """Fetch into `part`, retrying transient failures with exponential backoff; keep what arrived."""
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, output.name, timeout_seconds)
            return
        except _PermanentHTTPError as error:
            raise InputError(url, f"the server refused the download ({error})",
                             f"check the URL in the config, or download the file by hand to {output} "
                             "and re-run") from error
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
            last_error = error
            if attempt < retries:
                delay = backoff_seconds * 2 ** attempt
                log.warning("download of %s failed (%s); retry %d of %d in %g s",
                            url, error, attempt + 1, retries, delay)
                _sleep(delay)
    raise InputError(url, f"download failed after {retries + 1} attempts; last error: {last_error}",
                     f"check the network connection / proxy settings (HTTPS_PROXY), or download the file "
                     f"by hand to {output} and re-run") from last_error


def _fetch(url: str, part: Path, label: str, timeout_seconds: float) -> None:
    """One request: append to `part` when the server honours the Range, otherwise start over."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            return  # nothing left past `offset`: the part is complete (verification will tell)
        if error.code >= 500 or error.code in RETRYABLE_HTTP_CODES:
            raise
        raise _PermanentHTTPError(f"HTTP {error.code} {error.reason}") from error
    with response:
        if response.status == 206:
            _check_range_start(response.headers.get("Content-Range", ""), offset, part)
        else:
            offset = 0  # the server ignored the Range and sends the whole file
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with open(part, "ab" if offset else "wb") as sink, \
                tqdm(total=None if expected is None else offset + expected, initial=offset, unit="B",
                     unit_scale=True, unit_divisor=1024, desc=label, disable=None) as progress:
            while chunk := response.read(CHUNK_BYTES):
                sink.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
        if expected is not None and received < expected:
            raise http.client.IncompleteRead(b"", expected - received)


def _check_range_start(content_range: str, offset: int, part: Path) -> None:
    """A 206 must continue exactly where the part ends; otherwise drop the part and retry from zero."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if match is None or int(match.group(1)) != offset:
        part.unlink()
        raise http.client.HTTPException(f"partial answer {content_range!r} does not start at byte {offset}")


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest(), path.stat().st_size


def _mismatch(sha256: str | None, size: int | None, actual_sha256: str, actual_size: int) -> str | None:
    """What is wrong with a file of this digest and size, or None when it matches."""
    if size is not None and actual_size != int(size):
        return f"has {actual_size} bytes, expected {int(size)}"
    if sha256 is not None and actual_sha256 != sha256:
        return f"has sha256 {actual_sha256}, expected {sha256}"
    return None


@contextlib.contextmanager
def _locked_record(record: Path) -> Iterator[None]:
    """Hold an exclusive lock on the record's folder, so parallel downloads do not lose each other's rows."""
    record.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(record.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # closing releases the lock


def _read_record(record: Path) -> pd.DataFrame:
    if not record.exists():
        return pd.DataFrame(columns=RECORD_COLUMNS)
    table = pd.read_csv(record, sep="\t", dtype=str, keep_default_na=False)
    if list(table.columns) != RECORD_COLUMNS:
        raise InputError(str(record), f"columns are {list(table.columns)}, expected {RECORD_COLUMNS}",
                         "restore the checksum record from version control, or delete it to record "
                         "checksums again on the next download")
    return table


def _recorded_checksum(record: Path, url: str, size: int | None) -> tuple[str | None, int | None]:
    """The (sha256, size) recorded for `url`, or (None, size) when it was never downloaded."""
    with _locked_record(record):
        table = _read_record(record)
    rows = table[table["url"] == url]
    if rows.empty:
        return None, size
    recorded_size = int(rows["size"].iloc[-1]) if rows["size"].iloc[-1] else None
    return rows["sha256"].iloc[-1], size if size is not None else recorded_size


def _record_first_use(record: str | Path | None, url: str, expected_sha256: str | None, actual_sha256: str,
                      actual_size: int) -> None:
    """Append a never-verified source's checksum to the record, and say that it was not verified."""
    if record is None or expected_sha256 is not None:
        return
    record = Path(record)
    with _locked_record(record):
        table = _read_record(record)
        if (table["url"] == url).any():
            return  # recorded meanwhile by a parallel job; the next run verifies against it
        row = pd.DataFrame([[url, actual_sha256, str(actual_size)]], columns=RECORD_COLUMNS)
        write_tsv(pd.concat([table, row], ignore_index=True), record)
    log.warning("%s: no published checksum; recorded sha256 %s (%d bytes) in %s on first use. It was NOT "
                "verified against a published value; later downloads must match it.",
                url, actual_sha256, actual_size, record)
