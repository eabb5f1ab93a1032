"""Folder walk: sorted, recursive, follows links but never loops, reports what it cannot walk."""

from __future__ import annotations

from unprivileged import run_unprivileged

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


_WALK_AS_USER = """
import json
from engine.imageio import WalkProblem, iter_image_files

out = []
for item in iter_image_files(sys.argv[1]):
    if isinstance(item, WalkProblem):
        out.append(["problem", str(item.path), item.reason])
    else:
        out.append(["file", str(item)])
print(json.dumps(out))
"""


def test_unlistable_folder_reported(tmp_path):
    """A folder its reader may not list, walked in a process that file modes apply to (root lists
    mode-000 folders, so as root the walk runs without root's file capabilities)."""
    locked = tmp_path / "locked"
    _touch(locked / "a.dcm")
    _touch(tmp_path / "z.dcm")  # the control: the rest of the walk goes on
    locked.chmod(0)
    try:
        got = run_unprivileged(_WALK_AS_USER, str(tmp_path))
    finally:
        locked.chmod(0o755)
    assert got == [
        ["problem", str(locked), "cannot list folder: Permission denied"],
        ["file", str(tmp_path / "z.dcm")],
    ]
