"""The download path against a real HTTP server on 127.0.0.1 serving a zip the test builds."""

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ser_lightning.data import download
from ser_lightning.data.corpora import RavdessCorpus
from ser_lightning.data.download import (
    COMPLETION_RECORD,
    RAVDESS_SPEECH,
    Archive,
    ChecksumError,
    download_archive,
    main,
)
from ser_lightning.data.download.transfer import backoff_delay

from .helpers.audio import write_tone

ARCHIVE_PATH = "/records/1188976/files/Audio_Speech_Actors_01-24.zip"


def ravdess_zip(tmp_path: Path) -> bytes:
    """A small zip shaped like the RAVDESS speech archive: Actor_XX/03-01-..-XX.wav at the top."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        for actor in range(1, 5):
            for emotion in (1, 3, 5):
                name = f"Actor_{actor:02d}/03-01-{emotion:02d}-01-01-01-{actor:02d}.wav"
                wav = write_tone(tmp_path / "src" / name, seconds=0.2, freq=200.0 + 40 * emotion)
                bundle.write(wav, name)
    return buffer.getvalue()


class ArchiveServer(ThreadingHTTPServer):
    """Serves one payload with HTTP Range support; can cut the first transfers short."""

    def __init__(self, payload: bytes):
        super().__init__(("127.0.0.1", 0), ArchiveHandler)
        self.payload = payload
        self.cut_after: list[int] = []  # byte counts at which the next responses break off
        self.honour_range = True
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes
        self.portal_page: bytes | None = None  # answer every request with this web page (a captive portal)
        self.requests: list[str | None] = []  # the Range header of every request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{ARCHIVE_PATH}"


class ArchiveHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server API)
        server: ArchiveServer = self.server
        if self.path != ARCHIVE_PATH:
            self.send_error(404)
            return
        range_header = self.headers.get("Range")
        server.requests.append(range_header)
        if server.portal_page is not None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(server.portal_page)))
            self.end_headers()
            self.wfile.write(server.portal_page)
            return
        start = int(range_header.split("=")[1].rstrip("-")) if range_header and server.honour_range else 0
        if start >= len(server.payload):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(server.payload)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = server.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}"
            )
        if server.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if server.cut_after:
            self.wfile.write(body[: server.cut_after.pop(0)])
            self.wfile.flush()
            self.close_connection = True  # the client sees fewer bytes than Content-Length
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    httpd = ArchiveServer(ravdess_zip(tmp_path))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def archive_for(server: ArchiveServer, md5: str | None = None) -> Archive:
    payload = server.payload
    return Archive(
        "Audio_Speech_Actors_01-24.zip", server.url, md5 or hashlib.md5(payload).hexdigest(), len(payload)
    )


def test_the_published_ravdess_archive():
    assert RAVDESS_SPEECH.url.startswith(
        "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip"
    )
    assert RAVDESS_SPEECH.md5 == "bc696df654c87fed845eb13823edef8a" and RAVDESS_SPEECH.size == 208_468_073


def test_download_verifies_unpacks_and_is_read_by_the_parser(server, tmp_path):
    dest = tmp_path / "data" / "ravdess"
    lines: list[str] = []
    download_archive(archive_for(server), dest, say=lines.append, backoff_s=0, chunk_bytes=1024)
    table = RavdessCorpus(str(dest)).scan().table
    assert len(table) == 12 and sorted(table["actor"].unique()) == ["01", "02", "03", "04"]
    assert (dest / COMPLETION_RECORD).is_file() and not (dest / ".download").exists()  # archive removed
    assert server.requests == [None]
    assert any("matches" in line for line in lines) and any("unpacked 12 files" in line for line in lines)

    lines.clear()
    download_archive(archive_for(server), dest, say=lines.append)
    assert server.requests == [None] and "nothing to do" in lines[0]


def test_truncated_transfer_resumes_with_a_range_request(server, tmp_path):
    dest = tmp_path / "ravdess"
    # two broken transfers, then a whole one; cuts at whole chunks, as a partly read chunk is not kept
    server.cut_after = [25 * 1024, 20 * 1024]
    lines: list[str] = []
    download_archive(
        archive_for(server), dest, keep_archive=True, say=lines.append, backoff_s=0, chunk_bytes=1024
    )
    assert server.requests == [None, f"bytes={25 * 1024}-", f"bytes={45 * 1024}-"]
    assert sum("transfer interrupted" in line for line in lines) == 2
    kept = dest / ".download" / "Audio_Speech_Actors_01-24.zip"
    assert kept.read_bytes() == server.payload
    assert len(RavdessCorpus(str(dest)).scan().table) == 12


def test_an_earlier_partial_download_is_resumed(server, tmp_path):
    dest = tmp_path / "ravdess"
    part = dest / ".download" / "Audio_Speech_Actors_01-24.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(server.payload[:1000])  # what a killed run left behind
    download_archive(archive_for(server), dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024)
    assert server.requests == ["bytes=1000-"]
    assert len(RavdessCorpus(str(dest)).scan().table) == 12


def test_a_server_without_range_support_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "ravdess"
    server.cut_after = [5 * 1024]
    server.honour_range = False
    lines: list[str] = []
    download_archive(archive_for(server), dest, say=lines.append, backoff_s=0, chunk_bytes=1024)
    assert server.requests == [None, f"bytes={5 * 1024}-"]
    assert any("does not resume" in line for line in lines)
    assert len(RavdessCorpus(str(dest)).scan().table) == 12


def test_a_wrong_checksum_fails_clearly_and_leaves_nothing_complete(server, tmp_path):
    dest = tmp_path / "ravdess"
    with pytest.raises(ChecksumError, match=r"MD5 of the downloaded .* is [0-9a-f]{32}, not 0{32}.*removed"):
        download_archive(
            archive_for(server, md5="0" * 32), dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024
        )
    assert list(dest.rglob("*")) == []  # no archive, no .part, no audio, no completion record


def test_a_transfer_that_keeps_breaking_stops_and_keeps_what_arrived(server, tmp_path):
    dest = tmp_path / "ravdess"
    server.cut_after = [4 * 1024, 4 * 1024, 4 * 1024]
    with pytest.raises(
        download.DownloadError, match="broke off 2 times.*run the same command again to resume"
    ):
        download_archive(
            archive_for(server), dest, say=lambda _: None, retries=1, backoff_s=0, chunk_bytes=1024
        )
    part = dest / ".download" / "Audio_Speech_Actors_01-24.zip.part"
    assert part.read_bytes() == server.payload[: 8 * 1024] and not (dest / COMPLETION_RECORD).exists()
    server.cut_after = []
    download_archive(archive_for(server), dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024)
    assert server.requests[-1] == f"bytes={8 * 1024}-" and len(RavdessCorpus(str(dest)).scan().table) == 12


def test_a_mirror_serving_a_larger_file_fails_at_once(server, tmp_path):
    dest = tmp_path / "ravdess"
    archive = archive_for(server)
    server.payload += b"\0" * 50_000  # another version of the archive, larger than published
    with pytest.raises(
        download.DownloadError, match=r"announces \d+ bytes.*expected to be \d+ bytes.*not the archive"
    ):
        download_archive(archive, dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024)
    assert server.requests == [None] and not (dest / ".download").exists()


def test_bytes_past_the_expected_size_are_not_written(server, tmp_path):
    dest = tmp_path / "ravdess"
    archive = archive_for(server)
    server.payload += b"\0" * 50_000
    server.send_length = False  # nothing announced: the cap applies while writing
    with pytest.raises(download.DownloadError, match=r"sent more than the \d+ bytes.*not the archive"):
        download_archive(archive, dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024)
    assert server.requests == [None] and not (dest / ".download").exists()


def test_a_captive_portal_page_is_named_as_such(server, tmp_path):
    dest = tmp_path / "ravdess"
    server.portal_page = b"<!DOCTYPE html><html><body>Sign in to the hotel Wi-Fi</body></html>"
    with pytest.raises(download.DownloadError, match=r"web page \(text/html, 6\d bytes\).*captive portal"):
        download_archive(archive_for(server), dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024)
    assert server.requests == [None] and not (dest / ".download").exists()


def test_a_server_that_keeps_ending_early_is_given_a_bounded_number_of_passes(server, tmp_path):
    dest = tmp_path / "ravdess"
    archive = archive_for(server)
    server.payload = server.payload[:3000]  # a truncated copy on the server, served whole every time
    server.honour_range = False
    lines: list[str] = []
    with pytest.raises(download.DownloadError, match=r"3 passes.*3000 of the \d+ bytes expected.*max_passes"):
        download_archive(archive, dest, say=lines.append, max_passes=3, backoff_s=0, chunk_bytes=1024)
    assert len(server.requests) == 3
    assert sum("ended early" in line for line in lines) == 2


def test_back_off_doubles_up_to_a_cap():
    assert [backoff_delay(n, 2.0, 30.0) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(5, 0.0, 30.0) == 0.0


def test_a_folder_left_by_a_killed_unpack_is_removed(server, tmp_path):
    dest = tmp_path / "ravdess"
    # what an unpack killed before moving its files in leaves: a full copy in a hidden folder
    with zipfile.ZipFile(io.BytesIO(server.payload)) as bundle:
        bundle.extractall(dest / ".unpack-1a2b3c4d")
    download_archive(archive_for(server), dest, say=lambda _: None, backoff_s=0, chunk_bytes=1024)
    assert not list(dest.glob(".unpack-*"))
    scan = RavdessCorpus(str(dest)).scan()
    assert len(scan.table) == 12 and scan.rejected == []
    assert all(".unpack-" not in p for p in scan.table["path"])


def test_command_line_with_a_mirror_checks_the_published_md5(server, tmp_path, capsys):
    dest = tmp_path / "ravdess"
    assert main(["ravdess", "--dest", str(dest), "--url", server.url, "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert "bc696df654c87fed845eb13823edef8a" in err and "removed" in err
    assert not (dest / COMPLETION_RECORD).exists()


def test_command_line_downloads_into_the_default_folder(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SER_LIGHTNING_ROOT", str(tmp_path))
    monkeypatch.setattr(download, "ARCHIVES", {"ravdess": archive_for(server)})
    assert main(["ravdess"]) == 0
    assert len(RavdessCorpus(str(tmp_path / "data" / "ravdess")).scan().table) == 12
    assert "data=ravdess" in capsys.readouterr().out


@pytest.mark.parametrize(
    "corpus, expected",
    [
        ("crema_d", "git lfs pull"),
        ("tess", "10.5683/SP2/E8H2MF"),
        ("savee", "kahlan.eps.surrey.ac.uk/savee"),
        ("ser_en", "kaggle datasets download -d dmitrybabko/speech-emotion-recognition-en"),
    ],
)
def test_manual_corpora_print_what_to_do(corpus, expected, capsys):
    assert main([corpus]) == 0
    out = capsys.readouterr().out
    assert "cannot be downloaded automatically" in out and expected in out and f"data={corpus}" in out
