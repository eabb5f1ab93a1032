"""Folder walk: sorted, recursive, follows links but never loops, reports what it cannot walk."""

from __future__ import annotations

import os

import pytest

from engine.imageio import WalkProblem, iter_image_files


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walk_is_recursive_sorted_and_keeps_every_file(tmp_path):
    for rel in ["b/2.dcm", "b/10.dcm", "a/z/IM0001", "a/img.png", "notes.txt", "c.dcm/inner.dcm"]:
        _touch(tmp_path / rel)
    got = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    # Name order within each folder, folders walked where they sort; nothing is filtered by name.
    assert got == ["a/img.png", "a/z/IM0001", "b/10.dcm", "b/2.dcm", "c.dcm/inner.dcm", "notes.txt"]


def test_empty_directory_named_like_an_image_is_reported(tmp_path):
    (tmp_path / "IM1.dcm").mkdir()
    (tmp_path / "plain_empty_folder").mkdir()
    _touch(tmp_path / "z.dcm")
    assert list(iter_image_files(tmp_path)) == [
        WalkProblem(
            tmp_path / "IM1.dcm", "is a directory named like an image file, holding no files"
        ),
        tmp_path / "z.dcm",
    ]


def test_files_and_folders_mixed_and_missing(tmp_path):
    f = _touch(tmp_path / "one.dcm")
    d = tmp_path / "d"
    _touch(d / "two.dcm")
    missing = tmp_path / "nope"
    empty = tmp_path / "empty"
    empty.mkdir()
    got = list(iter_image_files([f, d, missing, empty]))
    assert got == [
        f,
        d / "two.dcm",
        WalkProblem(missing, "no such file or folder"),
        WalkProblem(empty, "folder holds no files"),
    ]
    assert str(got[2]) == f"{missing}: no such file or folder"


def test_single_path_argument_and_string(tmp_path):
    f = _touch(tmp_path / "x.dcm")
    assert list(iter_image_files(str(f))) == [f]


def test_symlink_to_folder_walked_once(tmp_path):
    _touch(tmp_path / "real" / "a.dcm")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    got = list(iter_image_files(tmp_path))
    # "alias" sorts first, so the files are found through it; "real" is then reported, not repeated.
    assert got == [
        tmp_path / "alias" / "a.dcm",
        WalkProblem(
            tmp_path / "real",
            f"symbolic link to a folder already walked ({tmp_path / 'real'})",
        ),
    ]


def test_broken_symlink_is_yielded_for_read_header_to_explain(tmp_path):
    (tmp_path / "dangling.dcm").symlink_to(tmp_path / "gone.dcm")
    assert list(iter_image_files(tmp_path)) == [tmp_path / "dangling.dcm"]


def test_unlistable_folder_reported(tmp_path):
    locked = tmp_path / "locked"
    _touch(locked / "a.dcm")
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
            pytest.skip("running as root: mode 000 does not stop root from listing the folder")
        except PermissionError:
            pass
        assert list(iter_image_files(tmp_path)) == [
            WalkProblem(locked, "cannot list folder: Permission denied")
        ]
    finally:
        locked.chmod(0o755)
