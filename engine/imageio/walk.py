"""Folder walking: every regular file under the given paths, with a :class:`WalkProblem` for
loops, unlistable folders, missing paths and folders holding no files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.imageio.records import WalkProblem


def iter_image_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> Iterator[Path | WalkProblem]:
    """Yield every file under ``paths`` (folders walked recursively, sorted by name).

    Every regular file is yielded, whatever its name: formats are decided by content, and a file
    that is not an image gets its reason from :func:`read_header` rather than being skipped.
    Symbolic links are followed except into a folder already walked (a loop), which yields a
    :class:`WalkProblem`, as do unlistable folders, missing paths and folders holding no files.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            count = [0]
            yield from _walk(path, set(), set(), count)
            if count[0] == 0:
                yield WalkProblem(path, "folder holds no files")
        elif os.path.lexists(path):
            yield path  # a file, a broken link or a special file: read_header says which
        else:
            yield WalkProblem(path, "no such file or folder")


_IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff"})


def _walk(
    folder: Path, ancestors: set[tuple[int, int]], visited: set[tuple[int, int]], count: list[int]
) -> Iterator[Path | WalkProblem]:
    try:
        st = os.stat(folder)
    except OSError as exc:
        yield WalkProblem(folder, f"cannot open folder: {exc.strerror or exc}")
        return
    key = (st.st_dev, st.st_ino)
    if key in ancestors:
        yield WalkProblem(
            folder,
            f"symbolic link loop: leads back to {os.path.realpath(folder)}, not walked again",
        )
        return
    if key in visited:
        yield WalkProblem(
            folder, f"symbolic link to a folder already walked ({os.path.realpath(folder)})"
        )
        return
    visited.add(key)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield WalkProblem(folder, f"cannot list folder: {exc.strerror or exc}")
        return
    ancestors = ancestors | {key}
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            before = count[0]
            yield from _walk(Path(entry.path), ancestors, visited, count)
            if count[0] == before and Path(entry.name).suffix.lower() in _IMAGE_SUFFIXES:
                # Someone expected an image here: say so instead of passing it by in silence.
                yield WalkProblem(
                    Path(entry.path), "is a directory named like an image file, holding no files"
                )
        else:
            count[0] += 1
            yield Path(entry.path)
