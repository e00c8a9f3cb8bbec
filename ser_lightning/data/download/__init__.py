"""Getting corpora: `python -m ser_lightning.data.download CORPUS [--dest DIR]`.

RAVDESS speech is fetched from Zenodo (record 1188976), its MD5 checked against the value
Zenodo lists for the file, and unpacked where `data=ravdess` looks (paths.data_dir/ravdess).
An interrupted transfer resumes where it stopped (HTTP Range), within one call and across
calls. Nothing that looks complete is left behind by a failure: the transfer is written to
`<dest>/.download/<archive>.part`, renamed only once its checksum matches, unpacked into a
temporary folder first, and the folder gets its completion record last.

CREMA-D, TESS, SAVEE and the combined set need a sign-in or a licence step: for them the
command prints exactly what to do (ser_lightning.data.corpora.sources).

The transfer and its checks are in `transfer`, the unpacking and completion record in
`unpacking`; this module chooses the archive and the folder, and runs both.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.download.transfer import (
    Archive,
    ChecksumError,
    DownloadError,
    fetch,
    md5_of,
    megabytes,
    verify,
)
from ser_lightning.data.download.unpacking import (
    COMPLETION_RECORD,
    read_completion,
    remove_stale_staging,
    unpack,
    write_completion,
)
from ser_lightning.utils.config import CONFIG_DIR

__all__ = [
    "ARCHIVES",
    "COMPLETION_RECORD",
    "RAVDESS_SPEECH",
    "Archive",
    "ChecksumError",
    "DownloadError",
    "default_data_dir",
    "download_archive",
    "main",
    "manual_steps",
]

# The speech audio of RAVDESS as Zenodo lists it (record 1188976): file name, size and MD5.
RAVDESS_SPEECH = Archive(
    filename="Audio_Speech_Actors_01-24.zip",
    url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
    md5="bc696df654c87fed845eb13823edef8a",
    size=208_468_073,
)
ARCHIVES: dict[str, Archive] = {"ravdess": RAVDESS_SPEECH}


def default_data_dir() -> Path:
    """paths.data_dir of conf/paths/default.yaml: where the data configs look for corpora.

    Returns:
        The folder, as the config gives it (relative to the working directory unless absolute).
    """
    paths = OmegaConf.create({"paths": OmegaConf.load(CONFIG_DIR / "paths" / "default.yaml")})
    return Path(paths.paths.data_dir)


def download_archive(
    archive: Archive,
    dest: str | Path,
    keep_archive: bool = False,
    say: Callable[[str], None] = print,
    **fetch_options: Any,
) -> Path:
    """Fetch, verify and unpack `archive` into `dest`; a second call finds it done and returns.

    Args:
        archive: what to fetch.
        dest: the corpus folder.
        keep_archive: keep the verified archive in `dest/.download` after unpacking.
        say: where progress messages go.
        **fetch_options: passed to `transfer.fetch` (retries, backoff_s, session, ...).

    Returns:
        The corpus folder.

    Raises:
        DownloadError: the transfer failed or its MD5 did not match (ChecksumError).
    """
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
            say(f"received {megabytes(received)} in {time.perf_counter() - started:.0f} s; checking the MD5")
            verify(archive, part)
        except DownloadError:
            if not any(downloads.iterdir()):
                downloads.rmdir()
            raise
        part.rename(zip_path)
        say(f"MD5 {archive.md5} matches")
    files = unpack(zip_path, dest)
    write_completion(dest, archive, files)
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
    """What to do for a corpus that cannot be fetched without a sign-in or licence step.

    Args:
        corpus: a key of SOURCES.

    Returns:
        The steps, as lines to print.
    """
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
    """The command line: fetch a corpus that can be fetched, or print the steps for one that cannot.

    Args:
        argv: the arguments (None: sys.argv).

    Returns:
        The exit status: 0, or 1 when the download failed.
    """
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
