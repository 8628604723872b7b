"""Downloads against a loopback HTTP server that can fail, truncate, ignore Range and 404 on request."""

from __future__ import annotations

import csv
import hashlib
import http.server
import logging
import re
import threading
from dataclasses import dataclass, field

import pytest

from workflow_scripts.core.errors import InputError
from workflow_scripts.prepare import download
from workflow_scripts.prepare.download import download_file
from workflow_scripts.prepare.settings import DownloadSettings

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def source(url: str, sha256: str | None = None, size: int | None = None) -> DownloadSettings:
    """A file to download as the config gives it (no sha256 or size: neither is checked, or the record is)."""
    return DownloadSettings(url=url, filename=url.rsplit("/", 1)[-1], sha256=sha256, size=size)


@dataclass
class ServerState:
    """What the server serves, how it misbehaves, and what it saw."""

    payloads: dict[str, bytes] = field(default_factory=dict)
    fail_first: int = 0  # answer this many requests with 503
    truncate_once: bool = False  # declare the full Content-Length, send half, close
    ignore_range: bool = False  # answer 200 with the whole body even to a Range request
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    bytes_sent: list[int] = field(default_factory=list)


class PayloadHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        if state.fail_first > 0:
            state.fail_first -= 1
            self.send_error(503, "Service Unavailable")
            return
        if self.path not in state.payloads:
            self.send_error(404, "Not Found")
            return
        body = state.payloads[self.path]
        start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1)) if range_header else 0
        if range_header and not state.ignore_range:
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.truncate_once:
            state.truncate_once = False
            body = body[:len(body) // 2]
        self.wfile.write(body)
        state.bytes_sent.append(len(body))

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def server():
    """A loopback server on a free port; yields (base URL, state) and shuts down afterwards."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PayloadHandler)
    httpd.state = ServerState(payloads={"/data.bin": PAYLOAD})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Backoff delays requested by the downloader, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(download, "_sleep", delays.append)
    return delays


def test_plain_download_is_verified_and_renamed(server, tmp_path, sleeps):
    base, state = server
    output = tmp_path / "out" / "data.bin"
    digest = download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256, size=len(PAYLOAD)), output)
    assert digest == PAYLOAD_SHA256
    assert output.read_bytes() == PAYLOAD
    assert not (tmp_path / "out" / "data.bin.part").exists()
    assert state.requests == [("/data.bin", None)]


def test_checksum_mismatch_leaves_nothing(server, tmp_path, sleeps):
    base, _ = server
    output = tmp_path / "data.bin"
    with pytest.raises(InputError) as refused:
        download_file(source(f"{base}/data.bin", sha256="0" * 64), output)
    message = str(refused.value)
    assert f"{base}/data.bin" in message and "0" * 64 in message and PAYLOAD_SHA256 in message
    assert "re-run" in message and "update" in message
    assert not output.exists()
    assert not (tmp_path / "data.bin.part").exists()


def test_size_mismatch_is_refused(server, tmp_path, sleeps):
    base, _ = server
    with pytest.raises(InputError, match=f"has {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        download_file(source(f"{base}/data.bin", size=len(PAYLOAD) + 1), tmp_path / "data.bin")
    assert list(tmp_path.iterdir()) == []


def test_resume_sends_range_and_appends(server, tmp_path, sleeps):
    base, state = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:3000])
    digest = download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), tmp_path / "data.bin")
    assert digest == PAYLOAD_SHA256
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", "bytes=3000-")]
    assert state.bytes_sent == [len(PAYLOAD) - 3000]


def test_complete_part_answered_416_is_verified(server, tmp_path, sleeps):
    base, state = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    assert download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), tmp_path / "data.bin") == PAYLOAD_SHA256
    assert state.requests == [("/data.bin", f"bytes={len(PAYLOAD)}-")]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, sleeps):
    base, state = server
    state.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"not a prefix of the payload")
    assert download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), tmp_path / "data.bin") == PAYLOAD_SHA256
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert state.requests[0][1] == "bytes=27-"


def test_503s_are_retried_with_exponential_backoff(server, tmp_path, sleeps):
    base, state = server
    state.fail_first = 3
    digest = download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), tmp_path / "data.bin",
                           retries=5, backoff_seconds=0.5)
    assert digest == PAYLOAD_SHA256
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(state.requests) == 4


def test_truncated_body_is_resumed(server, tmp_path, sleeps):
    base, state = server
    state.truncate_once = True
    assert download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), tmp_path / "data.bin") == PAYLOAD_SHA256
    assert state.requests == [("/data.bin", None), ("/data.bin", f"bytes={len(PAYLOAD) // 2}-")]
    assert sleeps == [2.0]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_404_fails_at_once(server, tmp_path, sleeps):
    base, state = server
    with pytest.raises(InputError, match="404") as refused:
        download_file(source(f"{base}/missing.bin"), tmp_path / "missing.bin")
    assert f"{base}/missing.bin" in str(refused.value)
    assert sleeps == [] and len(state.requests) == 1


def test_exhausted_retries_name_url_and_fix(server, tmp_path, sleeps):
    base, state = server
    state.fail_first = 100
    output = tmp_path / "data.bin"
    with pytest.raises(InputError) as refused:
        download_file(source(f"{base}/data.bin"), output, retries=2)
    message = str(refused.value)
    assert f"{base}/data.bin" in message and "503" in message
    assert "proxy" in message and str(output) in message
    assert sleeps == [2.0, 4.0] and len(state.requests) == 3
    assert not output.exists()


def test_trust_on_first_use_records_then_refuses_a_change(server, tmp_path, sleeps, caplog):
    base, state = server
    url = f"{base}/data.bin"
    record = tmp_path / "checksums.tsv"
    with caplog.at_level(logging.WARNING, logger="workflow_scripts.prepare.download"):
        assert download_file(source(url), tmp_path / "first.bin", checksum_record=record) == PAYLOAD_SHA256
    assert "first use" in caplog.text and "NOT verified" in caplog.text
    with open(record, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows == [["url", "sha256", "size"], [url, PAYLOAD_SHA256, str(len(PAYLOAD))]]

    state.payloads["/data.bin"] = PAYLOAD[::-1]
    with pytest.raises(InputError, match="checksum record"):
        download_file(source(url), tmp_path / "second.bin", checksum_record=record)
    assert not (tmp_path / "second.bin").exists()
    with open(record, newline="") as handle:
        assert list(csv.reader(handle, delimiter="\t")) == rows


def test_present_verified_file_is_not_downloaded_again(server, tmp_path, sleeps):
    base, state = server
    output = tmp_path / "data.bin"
    download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), output)
    requests_before = len(state.requests)
    assert download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), output) == PAYLOAD_SHA256
    assert len(state.requests) == requests_before


def test_present_corrupt_file_is_downloaded_again(server, tmp_path, sleeps):
    base, state = server
    output = tmp_path / "data.bin"
    output.write_bytes(b"corrupt")
    assert download_file(source(f"{base}/data.bin", sha256=PAYLOAD_SHA256), output) == PAYLOAD_SHA256
    assert output.read_bytes() == PAYLOAD and len(state.requests) == 1
