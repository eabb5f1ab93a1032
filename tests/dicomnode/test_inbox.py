"""The inbox (UID grammar, atomic commit, free-space floor) and library.scanning.add_files /
record_refused on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil

import pytest
from node_helpers import sample

from cxrlt_desktop.dicomnode import Inbox, NoSpace, Outcome, valid_uid
from cxrlt_desktop.library import problem_files, query_worklist
from cxrlt_desktop.library.scanning import add_files, record_refused


@pytest.mark.parametrize(
    ("uid", "ok"),
    [
        # PS3.5 9.1: digits and ".", no leading zero in a component unless it is "0", <= 64
        ("1.2.840.10008.5.1.4.1.1.1", True),
        ("0.1", True),
        ("2.25.0", True),
        ("1", True),
        ("1." + "1" * 62, True),  # 64 characters
        ("1." + "1" * 63, False),  # 65
        ("1.02", False),
        ("01.2", False),
        ("1..2", False),
        ("1.2.", False),
        (".1.2", False),
        ("", False),
        ("1.2 ", False),
        ("../1.2", False),
        ("1.2/3", False),
        ("1.2\x00", False),
        ("1.2\n", False),
        ("١.٢", False),  # non-ASCII digits
        (None, False),
        (12, False),
    ],
)
def test_uid_grammar(uid, ok):
    assert valid_uid(uid) is ok


def test_commit_is_atomic_and_an_identical_resend_leaves_the_file(tmp_path):
    inbox = Inbox(tmp_path / "in")
    target = inbox.path_for("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert target == tmp_path / "in" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    assert inbox.commit(inbox.stage(b"first"), target) is Outcome.STORED
    mtime = target.stat().st_mtime_ns
    assert inbox.commit(inbox.stage(b"first"), target) is Outcome.UNCHANGED
    assert target.stat().st_mtime_ns == mtime
    assert inbox.commit(inbox.stage(b"other"), target) is Outcome.REPLACED
    assert target.read_bytes() == b"other"
    assert list(inbox.incoming.iterdir()) == []  # no temporary file left
    with pytest.raises(ValueError, match="SeriesInstanceUID is not a valid UID"):
        inbox.path_for("1.2", "../x", "1.2.3")


def test_free_space_floor(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    inbox = Inbox(tmp_path / "in", min_free_bytes=free + (1 << 30))
    with pytest.raises(NoSpace, match="free space below the floor"):
        inbox.stage(b"x" * 100)
    assert list(inbox.incoming.iterdir()) == []
    roomy = Inbox(tmp_path / "in", min_free_bytes=0)
    assert roomy.stage(b"x").path.read_bytes() == b"x"


def test_partial_files_of_a_crash_are_removed_at_start(tmp_path):
    inbox = Inbox(tmp_path / "in")
    (inbox.incoming / ".abc.partial").write_bytes(b"half")
    assert Inbox(tmp_path / "in").clean_partial() == 1
    assert list(inbox.incoming.iterdir()) == []


def test_add_files_adds_only_the_given_files(any_store, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    a = shutil.copy(sample("RG1_UNCR.dcm"), folder / "a.dcm")
    b = shutil.copy(sample("RG1_J2KR.dcm"), folder / "b.dcm")
    shutil.copy(sample("RG1_J2KI.dcm"), folder / "not_given.dcm")
    (folder / "bad.dcm").write_bytes(b"not dicom at all" * 10)
    res = add_files(any_store, [a, b, folder / "bad.dcm"])
    assert (res.progress.new, res.progress.unusable) == (3, 1)
    assert len(res.image_ids) == 2
    [(bad_path, reason)] = problem_files(any_store)
    assert bad_path.endswith("bad.dcm") and reason
    [row] = query_worklist(any_store)
    assert row.n_images == 2  # not_given.dcm, in the same folder, was not walked
    again = add_files(any_store, [a, b])
    assert (again.progress.unchanged, again.progress.new, again.image_ids) == (2, 0, [])
    # the same SOP instance at another path: a duplicate, not a second image
    dup = shutil.copy(sample("RG1_UNCR.dcm"), tmp_path / "dup.dcm")
    d = add_files(any_store, [dup])
    assert (d.progress.duplicates, d.image_ids) == (1, [])
    assert query_worklist(any_store)[0].n_images == 2


def test_record_refused_is_one_problem_per_source(any_store):
    src = "dicom://PACS@10.0.0.5/sop-class/1.2.840.10008.5.1.4.1.1.2"
    assert record_refused(any_store, src, "refused: CT (first)") is True
    assert record_refused(any_store, src, "refused: CT (second)") is False
    assert problem_files(any_store) == [(src, "refused: CT (second)")]
    assert query_worklist(any_store) == []
