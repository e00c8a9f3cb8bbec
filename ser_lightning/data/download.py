"""Getting corpora: `python -m ser_lightning.data.download CORPUS [--dest DIR]`.

RAVDESS speech is fetched from Zenodo (record 1188976), its MD5 checked against the value
Zenodo lists for the file, and unpacked where `data=ravdess` looks (paths.data_dir/ravdess).
An interrupted transfer resumes where it stopped (HTTP Range), within one call and across
calls. Nothing that looks complete is left behind by a failure: the transfer is written to
`<dest>/.download/<archive>.part`, renamed only once its checksum matches, unpacked into a
temporary folder first, and the folder gets its completion record last.

CREMA-D, TESS, SAVEE and the combined set need a sign-in or a licence step: for them the
command prints exactly what to do (ser_lightning.data.corpora.sources).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from omegaconf import OmegaConf

from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.utils.config import CONFIG_DIR
from ser_lightning.utils.errors import UserError
from ser_lightning.utils.files import atomic_write, unique_token
from ser_lightning.utils.progress import progress_bar

CHUNK_BYTES = 1 << 16  # also the most a broken transfer loses: a partly read chunk is not written
COMPLETION_RECORD = ".ser_lightning-download.json"
RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Requests that end short of the archive without an error (a truncated file on a mirror)
# before giving up, and the longest pause between two tries.
MAX_PASSES = 5
MAX_BACKOFF_S = 60.0
# How a web page begins (lower case), where an archive would begin with "PK".
HTML_STARTS = (b"<!doctype html", b"<html")
# Prefix of the folder an archive is unpacked into before its entries are moved into place.
STAGING_PREFIX = ".unpack-"


@dataclass(frozen=True)
class Archive:
    """A file to fetch, and what it must be."""

    filename: str
    url: str
    md5: str
    size: int | None = None  # bytes, when known: a complete .part needs no request


# The speech audio of RAVDESS as Zenodo lists it (record 1188976): file name, size and MD5.
RAVDESS_SPEECH = Archive(
    filename="Audio_Speech_Actors_01-24.zip",
    url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
    md5="bc696df654c87fed845eb13823edef8a",
    size=208_468_073,
)
ARCHIVES: dict[str, Archive] = {"ravdess": RAVDESS_SPEECH}


class DownloadError(UserError, RuntimeError):
    """The transfer failed; the message says how far it got and how to go on."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the archive; the partial file has been removed."""


def default_data_dir() -> Path:
    """paths.data_dir of conf/paths/default.yaml: where the data configs look for corpora."""
    paths = OmegaConf.create({"paths": OmegaConf.load(CONFIG_DIR / "paths" / "default.yaml")})
    return Path(paths.paths.data_dir)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def backoff_delay(attempt: int, backoff_s: float, max_backoff_s: float) -> float:
    """Seconds to wait after the `attempt`-th incomplete request: doubling from backoff_s, capped."""
    return min(max_backoff_s, backoff_s * 2.0 ** min(attempt - 1, 32))


def _refuse_web_page(response: requests.Response, first_block: bytes, archive: Archive) -> None:
    """A web page where the archive should be: a captive portal (hotel or airport Wi-Fi) or a moved link.

    `first_block` is sniffed only when it is the start of the file (a 200 answer); the middle
    of an archive may hold anything.
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
    """The bytes are not the archive: what was written of them is removed, so nothing is resumed from it."""
    part.unlink(missing_ok=True)
    return DownloadError(message + "; nothing was kept. Check the address, or use another mirror with --url")


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
    """Bring `part` to the archive's full length, resuming from what it holds; returns bytes received.

    At most `retries` broken transfers and `max_passes` requests that end early without an
    error are tried, with a pause between them that doubles from `backoff_s` up to
    `max_backoff_s`; never more than the archive's size is written.
    """
    session = session or requests.Session()
    received, failures, passes = 0, 0, 0
    with progress_bar("bytes") as progress:
        task = progress.add_task(archive.filename, total=archive.size)
        while True:
            have = part.stat().st_size if part.exists() else 0
            if archive.size is not None and have > archive.size:
                say(f"{part} is larger than the archive ({_mb(have)} > {_mb(archive.size)}); starting over")
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
                        say(f"resuming {archive.filename} at {_mb(have)}")
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
                        f"{archive.url} sent no data past {_mb(have)} of the {_mb(archive.size)} expected; "
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
                        f"the transfer ended early at {_mb(held)} of {_mb(archive.size)}; "
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
                        f"the transfer of {archive.url} broke off {failures} times, last at {_mb(held)} ({err}); "
                        + next_step
                    ) from err
                say(
                    f"transfer interrupted at {_mb(held)} ({type(err).__name__}); retrying ({failures}/{retries})"
                )
                time.sleep(backoff_delay(passes + failures, backoff_s, max_backoff_s))


def verify(archive: Archive, part: Path) -> None:
    """Check the MD5 of a finished transfer; a mismatch removes it so that nothing looks complete."""
    actual = md5_of(part)
    if actual != archive.md5:
        size = part.stat().st_size
        part.unlink()
        raise ChecksumError(
            f"the MD5 of the downloaded {archive.filename} ({_mb(size)}) is {actual}, not {archive.md5} as published; "
            f"the download was removed. Run the command again; if it fails the same way, the file at "
            f"{archive.url} has changed or a proxy altered it."
        )


def remove_stale_staging(dest: Path, say: Callable[[str], None] = print) -> None:
    """Remove the staging folders of unpacks that were killed: corpus scans would find their copies."""
    for leftover in sorted(dest.glob(STAGING_PREFIX + "*")):
        if leftover.is_dir():
            say(f"removing {leftover}, left by an unpack that was stopped")
            shutil.rmtree(leftover)


def unpack(zip_path: Path, dest: Path) -> int:
    """Extract into a temporary folder beside `dest`'s contents, then move the entries in; returns file count."""
    staging = dest / f"{STAGING_PREFIX}{unique_token()}"
    try:
        with zipfile.ZipFile(zip_path) as bundle:
            bundle.extractall(staging)
            count = sum(1 for info in bundle.infolist() if not info.is_dir())
        for entry in sorted(staging.iterdir()):
            target = dest / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            entry.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def read_completion(dest: Path) -> dict | None:
    record = dest / COMPLETION_RECORD
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text())
    except json.JSONDecodeError:
        return None


def download_archive(
    archive: Archive,
    dest: str | Path,
    keep_archive: bool = False,
    say: Callable[[str], None] = print,
    **fetch_options,
) -> Path:
    """Fetch, verify and unpack `archive` into `dest`; a second call finds it done and returns."""
    dest = Path(dest).expanduser()
    if dest.is_dir():
        remove_stale_staging(dest, say)
    done = read_completion(dest)
    if done and done.get("md5") == archive.md5:
        say(f"{archive.filename} is already unpacked in {dest} ({done.get('files')} files); nothing to do")
        return dest
    downloads = dest / ".download"
    downloads.mkdir(parents=True, exist_ok=True)
    part, zip_path = downloads / f"{archive.filename}.part", downloads / archive.filename
    if zip_path.exists() and md5_of(zip_path) == archive.md5:
        say(f"found the verified archive {zip_path}")
    else:
        zip_path.unlink(missing_ok=True)
        say(f"downloading {archive.url}\n  into {part}")
        started = time.perf_counter()
        try:
            received = fetch(archive, part, say=say, **fetch_options)
            say(f"received {_mb(received)} in {time.perf_counter() - started:.0f} s; checking the MD5")
            verify(archive, part)
        except DownloadError:
            if not any(downloads.iterdir()):
                downloads.rmdir()
            raise
        part.rename(zip_path)
        say(f"MD5 {archive.md5} matches")
    files = unpack(zip_path, dest)
    record = {**asdict(archive), "files": files, "unpacked": time.strftime("%Y-%m-%d %H:%M:%S")}
    with atomic_write(dest / COMPLETION_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    say(f"unpacked {files} files into {dest}")
    if keep_archive:
        say(f"kept the archive at {zip_path}")
    else:
        zip_path.unlink()
        say("removed the archive (--keep-archive keeps it)")
    if downloads.exists() and not any(downloads.iterdir()):
        downloads.rmdir()
    return dest


def manual_steps(corpus: str) -> str:
    """What to do for a corpus that cannot be fetched without a sign-in or licence step."""
    source = SOURCES[corpus]
    lines = [
        f"{source.title} cannot be downloaded automatically: it needs a sign-in or a licence step.",
        f"  home: {source.home}",
        f"  licence: {source.licence}",
        f"  data={corpus} looks in {default_data_dir() / source.default_folder} (or pass data.root=PATH)",
        "Steps:",
    ]
    lines += [f"  {i}. {step}" for i, step in enumerate(source.steps, 1)]
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ser_lightning.data.download", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("corpus", choices=sorted(SOURCES), help="the corpus to get")
    parser.add_argument("--dest", help="folder to unpack into (default: where data=CORPUS looks)")
    parser.add_argument(
        "--keep-archive", action="store_true", help="keep the downloaded archive after unpacking"
    )
    parser.add_argument("--url", help="fetch the same archive from a mirror; its MD5 must still match")
    parser.add_argument("--retries", type=int, default=5, help="resume attempts after a broken transfer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.corpus not in ARCHIVES:
        print(manual_steps(args.corpus))
        return 0
    archive = ARCHIVES[args.corpus]
    if args.url:
        archive = Archive(archive.filename, args.url, archive.md5, archive.size)
    dest = Path(args.dest) if args.dest else default_data_dir() / SOURCES[args.corpus].default_folder
    try:
        download_archive(archive, dest, keep_archive=args.keep_archive, retries=args.retries)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"train with: python -m ser_lightning.train data={args.corpus}"
        + ("" if args.dest is None else f" data.root={dest}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
