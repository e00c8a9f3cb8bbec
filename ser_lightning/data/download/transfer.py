"""Bringing an archive's bytes onto this machine: resumable HTTP transfer and its checks.

An interrupted transfer resumes where it stopped (HTTP Range), within one call and across calls.
The bytes go to a `.part` file; a web page where the archive should be (a captive portal), a
body longer than the archive, or an MD5 that does not match removes what was written, so that
nothing is resumed from, or mistaken for, the wrong file.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from ser_lightning.utils.errors import UserError
from ser_lightning.utils.progress import progress_bar

CHUNK_BYTES = 1 << 16  # also the most a broken transfer loses: a partly read chunk is not written
RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Requests that end short of the archive without an error (a truncated file on a mirror)
# before giving up, and the longest pause between two tries.
MAX_PASSES = 5
MAX_BACKOFF_S = 60.0
# How a web page begins (lower case), where an archive would begin with "PK".
HTML_STARTS = (b"<!doctype html", b"<html")


@dataclass(frozen=True)
class Archive:
    """A file to fetch, and what it must be."""

    filename: str
    url: str
    md5: str
    size: int | None = None  # bytes, when known: a complete .part needs no request


class DownloadError(UserError, RuntimeError):
    """The transfer failed; the message says how far it got and how to go on."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the archive; the partial file has been removed."""


def md5_of(path: Path) -> str:
    """The MD5 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        The digest, as hex.
    """
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def megabytes(n: int) -> str:
    """A byte count for messages, e.g. `208.5 MB`.

    Args:
        n: bytes.

    Returns:
        The count in megabytes, one decimal.
    """
    return f"{n / 1e6:.1f} MB"


def backoff_delay(attempt: int, backoff_s: float, max_backoff_s: float) -> float:
    """Seconds to wait after the `attempt`-th incomplete request: doubling from backoff_s, capped.

    Args:
        attempt: how many requests failed or ended early so far (1 for the first).
        backoff_s: the first pause.
        max_backoff_s: the longest pause.

    Returns:
        The pause in seconds.
    """
    return min(max_backoff_s, backoff_s * 2.0 ** min(attempt - 1, 32))


def fetch(
    archive: Archive,
    part: Path,
    say: Callable[[str], None] = print,
    retries: int = 5,
    backoff_s: float = 2.0,
    session: requests.Session | None = None,
    timeout_s: float = 60.0,
    chunk_bytes: int = CHUNK_BYTES,
    max_passes: int = MAX_PASSES,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> int:
    """Bring `part` to the archive's full length, resuming from what it holds.

    At most `retries` broken transfers and `max_passes` requests that end early without an
    error are tried, with a pause between them that doubles from `backoff_s` up to
    `max_backoff_s`; never more than the archive's size is written.

    Args:
        archive: what to fetch.
        part: the file the bytes are appended to.
        say: where progress messages go.
        retries: broken transfers tried again before giving up.
        backoff_s: the first pause between two tries.
        session: the HTTP session (a new one when None).
        timeout_s: the read timeout of a request.
        chunk_bytes: the size of the blocks read and written.
        max_passes: requests that end early without an error before giving up.
        max_backoff_s: the longest pause between two tries.

    Returns:
        The bytes received by this call.

    Raises:
        DownloadError: the server refused, the transfer kept breaking off or ending early, or
            the bytes are not the archive (what was written of them is then removed).
    """  # noqa: DOC501 - raised as `_wrong_file(...)`, which builds a DownloadError
    session = session or requests.Session()
    received, failures, passes = 0, 0, 0
    with progress_bar("bytes") as progress:
        task = progress.add_task(archive.filename, total=archive.size)
        while True:
            have = part.stat().st_size if part.exists() else 0
            if archive.size is not None and have > archive.size:
                say(
                    f"{part} is larger than the archive ({megabytes(have)} > {megabytes(archive.size)}); starting over"
                )
                part.unlink()
                have = 0
            progress.update(task, completed=have)
            if archive.size is not None and have == archive.size:
                return received
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with session.get(
                    archive.url, headers=headers, stream=True, timeout=(10, timeout_s)
                ) as response:
                    if have and response.status_code == 416:
                        return received  # the server has nothing past what we hold: the checksum decides
                    response.raise_for_status()
                    resuming = have > 0 and response.status_code == 206
                    if resuming and not response.headers.get("Content-Range", "").startswith(
                        f"bytes {have}-"
                    ):
                        raise DownloadError(
                            f"the server answered the resume request for {archive.url} with Content-Range "
                            f"{response.headers.get('Content-Range')!r} instead of bytes {have}-; remove {part} "
                            "and run the command again"
                        )
                    blocks = response.iter_content(chunk_bytes)
                    first_block = next(blocks, b"")
                    _refuse_web_page(response, first_block, archive)
                    start = have if resuming else 0
                    room = None if archive.size is None else archive.size - start
                    announced = response.headers.get("Content-Length")
                    if room is not None and announced is not None and int(announced) > room:
                        raise _wrong_file(
                            part,
                            f"{archive.url} announces {announced} bytes from byte {start}, but the archive "
                            f"is expected to be {archive.size} bytes: it is not the archive published",
                        )
                    if have and not resuming:
                        say(
                            f"the server does not resume transfers; downloading {archive.filename} from the start"
                        )
                        progress.update(task, completed=0)
                    elif resuming:
                        say(f"resuming {archive.filename} at {megabytes(have)}")
                    if archive.size is None and announced is not None:
                        progress.update(task, total=have + int(announced))
                    this_pass = 0
                    with open(part, "ab" if resuming else "wb") as handle:
                        for block in itertools.chain([first_block], blocks):
                            if room is not None and this_pass + len(block) > room:
                                handle.close()
                                raise _wrong_file(
                                    part,
                                    f"{archive.url} sent more than the {archive.size} bytes the archive is "
                                    "expected to be: it is not the archive published",
                                )
                            handle.write(block)
                            this_pass += len(block)
                            progress.advance(task, len(block))
                    received += this_pass
                if archive.size is None:
                    return received
                if this_pass == 0:
                    raise DownloadError(
                        f"{archive.url} sent no data past {megabytes(have)} of the {megabytes(archive.size)} expected; "
                        f"the file on the server is not the one expected (remove {part} to start over)"
                    )
                if start + this_pass < archive.size:
                    # A body shorter than the archive without an error: the next pass resumes.
                    passes += 1
                    held = start + this_pass
                    if passes >= max_passes:
                        raise DownloadError(
                            f"after {passes} passes {part} holds {held} of the {archive.size} bytes expected: "
                            f"{archive.url} keeps ending the transfer early without an error (a truncated "
                            "file on the server?). Run the command again later to resume, use another mirror "
                            "with --url, or allow more passes (max_passes)"
                        )
                    say(
                        f"the transfer ended early at {megabytes(held)} of {megabytes(archive.size)}; "
                        f"trying again (pass {passes + 1}/{max_passes})"
                    )
                    time.sleep(backoff_delay(passes + failures, backoff_s, max_backoff_s))
            except requests.HTTPError as err:
                raise DownloadError(f"downloading {archive.url} failed: {err}") from err
            except RETRYABLE as err:
                failures += 1
                held = part.stat().st_size if part.exists() else 0
                if failures > retries:
                    next_step = (
                        f"{part} keeps what arrived: run the same command again to resume"
                        if held
                        else "nothing arrived: check the network connection and run the command again"
                    )
                    raise DownloadError(
                        f"the transfer of {archive.url} broke off {failures} times, last at {megabytes(held)} ({err}); "
                        + next_step
                    ) from err
                say(
                    f"transfer interrupted at {megabytes(held)} ({type(err).__name__}); retrying ({failures}/{retries})"
                )
                time.sleep(backoff_delay(passes + failures, backoff_s, max_backoff_s))


def _refuse_web_page(response: requests.Response, first_block: bytes, archive: Archive) -> None:
    """A web page where the archive should be: a captive portal (hotel or airport Wi-Fi) or a moved link.

    `first_block` is sniffed only when it is the start of the file (a 200 answer); the middle
    of an archive may hold anything.

    Raises:
        DownloadError: the answer is a web page rather than the archive.
    """
    content_type = response.headers.get("Content-Type", "")
    from_start = response.status_code != 206
    looks_like_html = from_start and first_block.lstrip()[:64].lower().startswith(HTML_STARTS)
    if "text/html" in content_type.lower() or looks_like_html:
        length = response.headers.get("Content-Length")
        size = f", {length} bytes" if length else ""
        raise DownloadError(
            f"{archive.url} answered with a web page (text/html{size}) instead of the archive: a captive "
            "portal (a Wi-Fi sign-in page) or a link that moved. Open the address in a browser, sign in "
            "or find the new link, then run the command again (--url takes a mirror)"
        )


def _wrong_file(part: Path, message: str) -> DownloadError:
    """The bytes are not the archive: what was written of them is removed, so nothing is resumed from it.

    Returns:
        The error to raise, its message ending with what to do.
    """
    part.unlink(missing_ok=True)
    return DownloadError(message + "; nothing was kept. Check the address, or use another mirror with --url")


def verify(archive: Archive, part: Path) -> None:
    """Check the MD5 of a finished transfer; a mismatch removes it so that nothing looks complete.

    Args:
        archive: what the transfer should have brought.
        part: the transferred file.

    Raises:
        ChecksumError: the MD5 is not the archive's.
    """
    actual = md5_of(part)
    if actual != archive.md5:
        size = part.stat().st_size
        part.unlink()
        raise ChecksumError(
            f"the MD5 of the downloaded {archive.filename} ({megabytes(size)}) is {actual}, not {archive.md5} as published; "
            f"the download was removed. Run the command again; if it fails the same way, the file at "
            f"{archive.url} has changed or a proxy altered it."
        )
