"""The reading session without Qt: navigation, the note's image, "reviewed", one callback per change."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cxrlt_desktop.review import ReviewSession, image_reviewed, study_after, study_status


@dataclass
class Img:
    image_id: int
    series_uid: str | None
    prediction_id: int | None = None


STUDIES = {
    "two-series": [Img(1, "s1"), Img(2, "s1"), Img(3, "s2"), Img(4, "s2")],
    "three-series": [Img(21, "a"), Img(22, "b"), Img(23, "b"), Img(24, "c"), Img(25, "c")],
    "one": [Img(10, "a")],
    "empty": [],
}


class Recorder:
    def __init__(self, session: ReviewSession) -> None:
        self.calls: list[tuple] = []
        for name in (
            "study_opened",
            "note_target_changed",
            "image_changed",
            "image_updated",
            "status_changed",
        ):
            getattr(session, name).connect(lambda *a, n=name: self.calls.append((n, *a)))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def session():
    store = {
        k: [Img(i.image_id, i.series_uid, i.prediction_id) for i in v] for k, v in STUDIES.items()
    }
    s = ReviewSession(lambda uid: list(store[uid]))
    s.store = store  # the test edits what the next load returns
    return s


def ids(session) -> int | None:
    return None if session.current is None else session.current.image_id


def test_opening_a_study_shows_its_first_image_and_moves_the_note(session):
    rec = Recorder(session)
    session.open_study("two-series")
    assert ids(session) == 1 and session.note_image_id == 1
    assert rec.names() == ["study_opened", "note_target_changed", "image_changed"]
    assert rec.calls[1] == ("note_target_changed", None, 1)


def test_image_navigation_stops_at_the_ends(session):
    session.open_study("two-series")
    assert not session.previous_image() and ids(session) == 1
    assert session.next_image() and session.next_image() and session.next_image()
    assert ids(session) == 4
    assert not session.next_image() and ids(session) == 4
    assert session.previous_image() and ids(session) == 3


def test_series_navigation_jumps_to_the_first_image_of_a_series(session):
    session.open_study("two-series")
    assert session.next_series() and ids(session) == 3
    assert not session.next_series() and ids(session) == 3  # last series: stays
    session.next_image()
    assert ids(session) == 4
    assert session.previous_series() and ids(session) == 1  # from inside series 2: series 1
    assert not session.previous_series() and ids(session) == 1


def test_previous_series_goes_to_the_series_just_before(session):
    session.open_study("three-series")
    session.go_to(4)  # inside the third series
    assert session.previous_series() and ids(session) == 22  # the second, not the first
    assert session.next_series() and ids(session) == 24
    assert session.previous_series() and ids(session) == 22  # from a series' first image too
    assert session.previous_series() and ids(session) == 21


def test_next_series_goes_to_the_series_just_after(session):
    session.open_study("three-series")
    assert session.next_series() and ids(session) == 22  # the second, not the last
    session.next_image()  # inside the second series
    assert session.next_series() and ids(session) == 24
    assert not session.next_series() and ids(session) == 24


def test_the_note_belongs_to_the_image_it_was_typed_for(session):
    rec = Recorder(session)
    session.open_study("two-series")
    rec.clear()
    session.next_image()
    # the old target comes first, before the new image is rendered
    assert rec.calls[:2] == [("note_target_changed", 1, 2), ("image_changed", session.current)]
    rec.clear()
    session.go_to(1)  # the same image again: the note stays with it
    assert rec.names() == ["image_changed"]
    rec.clear()
    session.open_study("empty")
    assert session.note_image_id is None and session.current is None
    assert ("note_target_changed", 2, None) in rec.calls


def test_study_navigation_follows_the_worklist_order(session):
    order = ["a", "b", "c"]
    assert study_after(order, "b", 1) == "c" and study_after(order, "b", -1) == "a"
    assert study_after(order, "c", 1) is None and study_after(order, "a", -1) is None
    assert study_after(order, None, 1) == "a"  # nothing open: the first study
    assert study_after(order, "gone", -1) == "a"
    session.open_study("one")
    assert session.study_after(["x", "one", "y"], 1) == "y"
    assert session.study_after(["x", "one", "y"], -1) == "x"


def test_reviewed_means_every_image_has_a_verdict():
    assert not image_reviewed({}) and image_reviewed({"Mass": "absent"})
    assert study_status(0, 0) == "unreviewed"
    assert study_status(2, 0) == "unreviewed"
    assert study_status(2, 1) == "partial"
    assert study_status(2, 2) == "reviewed"


def test_status_changes_fire_once(session):
    rec = Recorder(session)
    session.open_study("two-series")
    rec.clear()
    session.set_verdicts(1, {"Mass": "present"})
    session.set_verdicts(1, {"Mass": "absent"})  # still one reviewed image: no change
    assert rec.calls == [("status_changed", "partial")]
    for image_id in (2, 3, 4):
        session.set_verdicts(image_id, {"Mass": "absent"})
    assert session.status == "reviewed" and rec.names().count("status_changed") == 2
    session.set_verdicts(99, {"Mass": "absent"})  # not in this study: ignored
    assert rec.names().count("status_changed") == 2
    session.open_study("one")
    assert session.status == "unreviewed" and rec.calls[-3][0] == "status_changed"


def test_new_predictions_update_the_current_image_only_when_it_changed(session):
    session.open_study("two-series")
    rec = Recorder(session)
    assert not session.reload()
    session.store["two-series"][1] = Img(2, "s1", prediction_id=7)  # not the current image
    assert not session.reload() and rec.calls == []
    assert session.images[1].prediction_id == 7
    session.store["two-series"][0] = Img(1, "s1", prediction_id=8)
    assert session.reload()
    assert rec.calls == [("image_updated", session.current)]
    assert session.current.prediction_id == 8 and session.note_image_id == 1


# ----------------------------------------------------------------------------------------------
# the session over a real store, as the main window builds it, on SQLite and PostgreSQL


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """A new library on each dialect (PostgreSQL: ``postgres_url``, a database of its own)."""
    from cxrlt_desktop.store import open_store

    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    else:
        url = request.getfixturevalue("postgres_url")
    st = open_store(url)
    yield st
    st.close()


def test_a_session_over_the_store_reads_series_in_order_and_picks_up_new_scores(
    any_store, tmp_path, predictor
):
    import numpy as np
    from pydicom.uid import generate_uid

    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.library.scoring import score_library
    from cxrlt_desktop.ui.store_access import study_images
    from engine.dicomwrite import write_dicom

    store = any_store
    study = generate_uid()
    # series 2 is written (and scanned) first: the reading order is by series number
    for number, n in ((2, 1), (1, 2)):
        series = generate_uid()
        for k in range(n):
            px = np.random.default_rng(10 * number + k).integers(0, 4000, (256, 256))
            write_dicom(
                tmp_path / "lib" / f"s{number}" / f"im{k}.dcm",
                px.astype(np.uint16),
                study_uid=study,
                series_uid=series,
                extra={"SeriesNumber": number, "InstanceNumber": k + 1},
            )
    for _ in scan(store, [tmp_path / "lib"]):
        pass
    session = ReviewSession(lambda uid: study_images(store, uid))
    session.open_study(study)
    paths = [e.path for e in session.images]
    assert paths == [
        str(tmp_path / "lib" / "s1" / "im0.dcm"),
        str(tmp_path / "lib" / "s1" / "im1.dcm"),
        str(tmp_path / "lib" / "s2" / "im0.dcm"),
    ]
    assert session.n_series == 2 and session.next_series() and session.index == 2
    assert all(e.prediction_id is None for e in session.images)
    rec = Recorder(session)
    assert not session.reload() and rec.calls == []
    assert list(score_library(store, predictor))[-1].finished
    assert session.reload()  # the scores written meanwhile reach the open study
    assert rec.calls == [("image_updated", session.current)]
    assert all(e.prediction_id is not None for e in session.images)
    assert session.current.path == paths[2] and session.note_image_id == session.current.image_id
