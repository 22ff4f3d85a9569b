"""`eclsr data download` against a local HTTP server on 127.0.0.1 (no outside network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eclsr import DataError
from eclsr.data import CatalogueEntry
from eclsr.data.download import download

PAYLOAD = b"".join(f"{u} {u} {u + 1} {u + 2}\n".encode() for u in range(1, 400))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with HTTP Range support; records the Range headers it saw."""

    files: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        wanted = self.headers.get("Range")
        self.ranges.append(wanted)
        start = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
        if start >= len(body) and wanted:
            self.send_error(416)
            return
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("pack/seq.txt", PAYLOAD)
    Handler.files = {"/seq.txt": PAYLOAD, "/pack.zip": archive.getvalue(), "/wrong.txt": b"1 2 3\n"}
    Handler.ranges = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def entry(url: str, **kw: object) -> CatalogueEntry:
    return CatalogueEntry(
        name="tiny", description="test", path="tiny/seq.txt", url=url, sha256=SHA, **kw
    )


def test_download_verifies_and_is_idempotent(server: str, tmp_path: Path) -> None:
    result = download(entry(server + "/seq.txt"), tmp_path, timeout=5)
    assert result.path.read_bytes() == PAYLOAD and result.verified and result.sha256 == SHA
    assert not list(tmp_path.rglob("*.part"))
    assert download(entry(server + "/seq.txt"), tmp_path, timeout=5).already_present


def test_download_resumes_a_partial_file(server: str, tmp_path: Path) -> None:
    part = tmp_path / "tiny" / "seq.txt.part"
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:1000])
    result = download(entry(server + "/seq.txt"), tmp_path, timeout=5)
    assert result.path.read_bytes() == PAYLOAD
    assert Handler.ranges == ["bytes=1000-"]


def test_checksum_mismatch_leaves_no_file(server: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"checksum mismatch for 'tiny'.*expected sha256"):
        download(entry(server + "/wrong.txt"), tmp_path, timeout=5)
    assert not (tmp_path / "tiny" / "seq.txt").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_zip_member_is_extracted(server: str, tmp_path: Path) -> None:
    result = download(
        entry(server + "/pack.zip", archive_member="pack/seq.txt"), tmp_path, timeout=5
    )
    assert result.path == tmp_path / "tiny" / "seq.txt" and result.verified
    assert result.path.read_bytes() == PAYLOAD


def test_http_error_and_missing_url(server: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"HTTP 404"):
        download(entry(server + "/absent.txt"), tmp_path, timeout=5)
    with pytest.raises(DataError, match=r"has no download URL"):
        download(entry(None), tmp_path)  # type: ignore[arg-type]


def test_cli_download_then_load(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A catalogue name, fetched from a local mirror; the loaded data matches the served file."""
    from eclsr.cli.main import main

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "toys.txt"
    if not shared.is_file():
        pytest.skip("shared data not present")
    Handler.files["/toys.txt"] = shared.read_bytes()
    assert (
        main(
            ["data", "download", "toys", "--data-dir", str(tmp_path), "--url", server + "/toys.txt"]
        )
        == 0
    )
    assert "sha256 verified" in capsys.readouterr().out
    assert (tmp_path / "toys.txt").read_bytes() == shared.read_bytes()
    assert (
        main(
            [
                "data",
                "download",
                "toys",
                "--data-dir",
                str(tmp_path / "x"),
                "--url",
                server + "/wrong.txt",
            ]
        )
        == 2
    )
    assert "checksum mismatch" in capsys.readouterr().err
