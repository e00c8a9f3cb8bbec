"""The atomic writers of ser_lightning.utils.files, on real files and folders."""

import os

import pytest

from ser_lightning.utils.files import (
    FOLDER_RETIRED_TEMPLATE,
    FOLDER_STAGING_TEMPLATE,
    atomic_folder,
    atomic_write,
    temporaries_beside,
    temporary_beside,
)


def test_temporary_names_sit_beside_the_target_and_are_unique(tmp_path):
    target = tmp_path / "entry.npy"
    names = {temporary_beside(target) for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name.parent == tmp_path and name.name.startswith(f"entry.npy.tmp-{os.getpid()}-")
    hidden = temporary_beside(target, ".{name}.{token}.partial")
    assert hidden.name.startswith(".entry.npy.") and hidden.name.endswith(".partial")


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists()
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing changes before the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_sync_and_a_given_temporary_name(tmp_path):
    target = tmp_path / "a.json"
    chosen = tmp_path / "a.json.mine"
    with atomic_write(target, temporary=chosen, sync=True) as tmp:
        assert tmp == chosen
        tmp.write_text("1")
    assert target.read_text() == "1" and not chosen.exists()


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_exception_keeps_the_old_target_and_removes_the_temporary(tmp_path, error):
    target = tmp_path / "best.ckpt"
    target.write_bytes(b"complete")
    with pytest.raises(error):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise error()
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]


def test_an_exception_before_any_target_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        with atomic_write(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"1")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_folder_is_created_then_replaced_whole(tmp_path):
    root = tmp_path / "corpus"
    with atomic_folder(root) as staging:
        assert staging.is_dir() and staging.parent == tmp_path and staging.name.startswith(".corpus.")
        (staging / "a.wav").write_text("first")
    assert [p.name for p in root.iterdir()] == ["a.wav"]
    with atomic_folder(root) as staging:
        (staging / "b.wav").write_text("second")
    assert [p.name for p in root.iterdir()] == ["b.wav"]  # the old tree is gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_folder_exception_keeps_the_old_tree_and_removes_the_staging(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.wav").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_folder(root) as staging:
            (staging / "half.wav").write_text("x")
            raise RuntimeError("killed")
    assert (root / "a.wav").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_leftovers_are_found_for_their_target_only(tmp_path):
    root = tmp_path / "demo"
    ours = [temporary_beside(root, FOLDER_STAGING_TEMPLATE), temporary_beside(root, FOLDER_RETIRED_TEMPLATE)]
    neighbour = temporary_beside(tmp_path / "demo.x", FOLDER_STAGING_TEMPLATE)
    for path in [*ours, neighbour]:
        path.mkdir()
    found = temporaries_beside(root, FOLDER_STAGING_TEMPLATE) + temporaries_beside(
        root, FOLDER_RETIRED_TEMPLATE
    )
    assert found == ours
    assert temporaries_beside(tmp_path / "missing" / "demo") == []
