"""The locked install: exact pins for the compiled pair, a lock that matches pyproject.toml, and a
clear message (not a linker error) when the installed pair cannot load together."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ser_lightning.utils.environment import COMPILED_PAIR, expected_versions, installed_version

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "requirements.lock"


def locked_versions() -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", LOCK.read_text(), flags=re.M))


def test_the_compiled_pair_is_pinned_exactly_and_locked_and_installed_at_those_versions():
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for requirement in dependencies:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        if name in COMPILED_PAIR:
            assert re.fullmatch(rf"{name}==\d+(\.\d+)+", requirement), f"not an exact pin: {requirement}"
            pins[name] = requirement.split("==")[1]
    assert set(pins) == set(COMPILED_PAIR)
    assert pins["torch"] == pins["torchaudio"] == "2.11.0"
    # the same versions in the installed project's metadata, the lock and the environment
    assert expected_versions() == pins
    locked = locked_versions()
    for name, version in pins.items():
        assert locked[name] == version
        assert installed_version(name) == version


def test_every_locked_package_carries_hashes():
    entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", LOCK.read_text().split("\n", 2)[2])
    assert len(entries) > 100
    for entry in entries:
        assert "--hash=sha256:" in entry, f"no hash for {entry.splitlines()[0]}"


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """The files `make check-lock` reads, and the uv that `make test` bootstrapped."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "README.md"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    if not (REPO_ROOT / ".tools").is_dir():
        pytest.skip("uv is bootstrapped by `make install`; run the suite through `make test`")
    (tmp_path / ".tools").symlink_to(REPO_ROOT / ".tools")
    return tmp_path


def check_lock(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "check-lock"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_lock_passes_on_the_committed_lock_and_names_make_lock_when_a_dependency_changes(project_copy):
    in_sync = check_lock(project_copy)
    assert in_sync.returncode == 0, in_sync.stdout + in_sync.stderr

    pyproject = project_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"rich>=13",', '"rich>=13",\n    "tqdm>=4.60",'))
    stale = check_lock(project_copy)
    assert stale.returncode != 0
    assert "requirements.lock does not match pyproject.toml: run 'make lock'" in stale.stderr
    assert "ser-lightning (pyproject.toml)" in stale.stdout  # the diff shows the change


def test_a_torchaudio_that_cannot_load_next_to_torch_stops_with_versions_and_the_fix(tmp_path):
    # A torchaudio 2.11.1 whose library fails to link against torch 2.11.0, as the registry's
    # 2.11.1 does, placed ahead of the real one on the path.
    package = tmp_path / "torchaudio"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise OSError("/venv/torchaudio/lib/libtorchaudio.so: undefined symbol: '
        'torch_exception_get_what_without_backtrace")\n'
    )
    info = tmp_path / "torchaudio-2.11.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    result = subprocess.run(
        [sys.executable, "-m", "ser_lightning.train", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode != 0
    message = result.stderr.splitlines()
    assert message[-4] == (
        "ser_lightning.utils.environment.IncompatibleInstallError: torchaudio cannot be loaded in this "
        "environment: OSError: /venv/torchaudio/lib/libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace"
    )
    assert re.fullmatch(r"\s*torch\s+installed 2\.11\.0\s+expected 2\.11\.0", message[-3])
    assert re.fullmatch(r"\s*torchaudio\s+installed 2\.11\.1\s+expected 2\.11\.0\s+<- differs", message[-2])
    assert "run `make install`" in message[-1]
    assert "During handling" not in result.stderr
