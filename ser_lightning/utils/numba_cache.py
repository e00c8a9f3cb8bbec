"""numba's on-disk cache of librosa's compiled functions: a folder of our own, one writer at a time.

librosa compiles its numba functions (`@jit(cache=True)`, `@guvectorize(cache=True)`) on first
use and writes them to an index file (`*.nbi`) and data files (`*.nbc`). Processes that compile
the same function at once (the workers of a feature pool, the jobs of a sweep) can leave an
index that points at another signature's data (numba issue #10128); every process that loads
such a pair afterwards dies with a segmentation fault, until the files are deleted.

Three things keep that from happening here:

- Location: `configure_numba_cache_dir` (called when `ser_lightning` is imported, before numba)
  sets `NUMBA_CACHE_DIR` to a per-user folder keyed by the Python, numba and librosa versions,
  unless the user set it already. numba then reads and writes only there, never the
  `__pycache__` of site-packages.
- One writer: `prepare_numba_cache(name, warm_up)` runs `warm_up` (one call of every numba
  function a feature or transform uses, on a tiny input) in this process under an exclusive
  `flock` on `<cache>/.lock`, before any worker process starts. The first process compiles and
  writes, concurrent ones wait and then only load; forked workers inherit the loaded functions.
- A check before the first use: unless the cache files are exactly those last seen working
  (`verified.json`), `warm_up` first runs in a probe subprocess. A probe that dies (a signal, as
  a corrupted cache does) or fails makes us delete the cache files, warn naming the folder, and
  compile them again here, so a corrupted cache costs a recompilation instead of a crash.

See docs/numba_cache.md.
"""

from __future__ import annotations

import fcntl
import importlib.metadata as metadata
import importlib.util
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "NUMBA_CACHE_DIR"
CACHE_SUFFIXES = (".nbi", ".nbc")
LOCK_NAME = ".lock"
STAMP_NAME = "verified.json"
# The probe: the parent's import path first (so that the pickled warm-up's module is found from a
# checkout too), then the pickled warm-up, both read from stdin.
PROBE_SCRIPT = (
    "import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); pickle.load(sys.stdin.buffer)()"
)

# names of the warm-ups this process has run (a forked worker inherits the set, and the functions)
_prepared: set[str] = set()


class NumbaCacheError(RuntimeError):
    """librosa's numba functions cannot be compiled, even into an emptied cache."""


def default_numba_cache_dir() -> Path:
    """The per-user folder numba's cache goes to unless `NUMBA_CACHE_DIR` is set.

    Returns:
        `$XDG_CACHE_HOME/ser_lightning/numba/<versions>` (`~/.cache` when unset; a per-user
        temporary folder when there is no home directory).
    """
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory (some containers): a per-user temporary folder
            base = str(Path(tempfile.gettempdir()) / f"ser_lightning-{os.getuid()}")
    return Path(base) / "ser_lightning" / "numba" / _versions_key()


def _versions_key() -> str:
    # numba checks its own version and the source file's hash per index, but a folder per set of
    # versions keeps old entries out of the way (delete the folders of versions no longer used).
    versions = [f"py{sys.version_info.major}.{sys.version_info.minor}"]
    for name in ("numba", "librosa"):
        try:
            versions.append(f"{name}{metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}-none")
    return "-".join(versions)


def configure_numba_cache_dir() -> Path:
    """Point numba at `default_numba_cache_dir()` unless `NUMBA_CACHE_DIR` names a folder already.

    numba reads the variable when `numba.core.config` is imported (and again before each
    compilation, when a NUMBA_ variable changed), and picks a function's cache folder when the
    function is decorated, i.e. when librosa's submodule is imported. So this runs on importing
    `ser_lightning`; if numba was imported before, its configuration is reloaded. An empty value
    counts as unset, as it does for numba.

    Returns:
        The cache folder numba now uses.
    """
    if not os.environ.get(CACHE_DIR_VARIABLE):
        os.environ[CACHE_DIR_VARIABLE] = str(default_numba_cache_dir())
    config = sys.modules.get("numba.core.config")
    if config is not None and config.CACHE_DIR != os.environ[CACHE_DIR_VARIABLE]:
        config.reload_config()
    return Path(os.environ[CACHE_DIR_VARIABLE])


def cache_files(cache_dir: Path) -> list[Path]:
    """The numba index and data files under `cache_dir`.

    Returns:
        The `.nbi` and `.nbc` files anywhere below `cache_dir`, sorted.
    """
    return sorted(p for p in cache_dir.rglob("*") if p.suffix in CACHE_SUFFIXES and p.is_file())


def site_packages_cache_files() -> list[Path]:
    """List numba cache files in librosa's own `__pycache__` folders.

    numba does not read them while NUMBA_CACHE_DIR is set.

    Returns:
        The cache files under librosa's package folders; empty when librosa is not installed.
    """
    spec = importlib.util.find_spec("librosa")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [p for root in spec.submodule_search_locations for p in cache_files(Path(root))]


@contextmanager
def numba_cache_lock(cache_dir: Path) -> Iterator[None]:
    """Hold the exclusive inter-process lock of `cache_dir` (waiting as long as a compilation takes)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / LOCK_NAME, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to finish compiling numba functions into %s", cache_dir)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fingerprint(cache_dir: Path) -> dict[str, list[int]]:
    # Every writer changes size or modification time, so equal fingerprints mean the very files
    # that loaded last time; anything else (a compilation outside the lock, a corruption) re-probes.
    fingerprint = {}
    for path in cache_files(cache_dir):
        stat = path.stat()
        fingerprint[str(path.relative_to(cache_dir))] = [stat.st_size, stat.st_mtime_ns]
    return fingerprint


def _read_stamp(cache_dir: Path) -> dict:
    try:
        return json.loads((cache_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _is_verified(cache_dir: Path, name: str) -> bool:
    stamp = _read_stamp(cache_dir)
    return name in stamp.get("verified", []) and stamp.get("files") == _fingerprint(cache_dir)


def _record_verified(cache_dir: Path, name: str) -> None:
    """Record that `name`'s warm-up ran on the cache files as they are now."""
    stamp, files = _read_stamp(cache_dir), _fingerprint(cache_dir)
    verified = set(stamp.get("verified", [])) if stamp.get("files") == files else set()
    stamp = {"files": files, "verified": sorted(verified | {name})}
    (cache_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=1))


def probe(warm_up: Callable[[], object], cache_dir: Path) -> str | None:
    """Run `warm_up` in a fresh interpreter on `cache_dir`; None if it worked, else what went wrong.

    Costs an interpreter start with torch imported (~1.5 s on a 2-core machine) plus loading the
    cached functions (~2 s for handcrafted68's), so it only runs when the cache files changed
    since they last loaded (`verified.json`); otherwise `prepare_numba_cache` costs ~1 ms of stats.

    Args:
        warm_up: A picklable callable that calls the numba functions to load.
        cache_dir: The cache folder the probe process uses.

    Returns:
        None if the probe succeeded, else a sentence saying how it failed (killed by a signal,
        or its exit status and last line of stderr).
    """
    payload = pickle.dumps(list(sys.path)) + pickle.dumps(warm_up)
    environment = {**os.environ, CACHE_DIR_VARIABLE: str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT],
        input=payload,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
    )
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"the probe process was killed by signal {-done.returncode}"
    last_line = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
    return f"the probe process failed with exit status {done.returncode}: {last_line}"


def clear_cache(cache_dir: Path) -> int:
    """Delete the numba cache files (and the record of them) under `cache_dir`.

    Returns:
        How many cache files were deleted.
    """
    files = cache_files(cache_dir)
    for path in files:
        path.unlink(missing_ok=True)
    (cache_dir / STAMP_NAME).unlink(missing_ok=True)
    return len(files)


def prepare_numba_cache(name: str, warm_up: Callable[[], object]) -> None:
    """Load (or compile, one process at a time) the numba functions `warm_up` calls; once per process.

    Call it in the parent before starting worker processes that use those functions, and before
    the first use in this process. `name` says what `warm_up` covers (e.g. "handcrafted68"); it
    keys both the once-per-process memo and the record of verified warm-ups. `warm_up` must be
    picklable to be probed (a module-level function, or a partial of picklable objects); one
    that is not runs without the probe (still under the lock).
    """
    if name in _prepared:
        return
    cache_dir = configure_numba_cache_dir()
    if not _writable(cache_dir):
        warm_up()  # numba cannot write there either and falls back to librosa's __pycache__
    else:
        with numba_cache_lock(cache_dir):
            if not _is_verified(cache_dir, name):
                _probe_and_repair(name, warm_up, cache_dir)
            warm_up()
            _record_verified(cache_dir, name)
    _prepared.add(name)


def _writable(cache_dir: Path) -> bool:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / LOCK_NAME).touch()
    except OSError as err:
        log.warning("numba cache folder %s is not usable (%s); compiling without its lock", cache_dir, err)
        return False
    return True


def _probe_and_repair(name: str, warm_up: Callable[[], object], cache_dir: Path) -> None:
    """Probe the cache; if it cannot be loaded, delete it so that `warm_up` compiles it again here."""
    try:
        problem = probe(warm_up, cache_dir)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        log.debug("numba warm-up %r cannot be pickled for a probe (%s); running it without one", name, err)
        return
    if problem is None:
        return
    deleted = clear_cache(cache_dir)
    stale = site_packages_cache_files()
    unused = (
        f" ({len(stale)} older cache files in librosa's own __pycache__ are not read while "
        f"{CACHE_DIR_VARIABLE} is set and were left as they are)"
        if stale
        else ""
    )
    log.warning(
        "numba's cache in %s could not be loaded for %s (%s); it was probably written by processes "
        "compiling at once. Deleted its %d files; compiling them again now%s.",
        cache_dir,
        name,
        problem,
        deleted,
        unused,
    )
