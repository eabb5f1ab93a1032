"""The worklist's order and the review panel's image order are the same on SQLite and PostgreSQL.

The two dialects sort NULL differently when nothing says otherwise (SQLite: NULL is the
smallest value, first ascending and last descending; PostgreSQL: NULL is the largest, last
ascending and first descending). The worklist keeps the order it has always shown on SQLite
(undated studies after the dated ones of the same priority); a study's images follow the
viewer's reading order (series and images without a number after the numbered ones). The
expected orders below are written out by hand.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.worklist import count_worklist, query_worklist, study_images
from cxrlt_desktop.store.models import Image, Patient, Series, Study


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_store


# (study_uid, priority, study_date), inserted in this order (ids ascending)
STUDIES = [
    ("1.1", -1.0, "20240101"),
    ("1.2", -1.0, None),  # unscored and undated
    ("1.3", 2.5, "20230101"),
    ("1.4", -1.0, "20240301"),
    ("1.5", 0.7, None),
    ("1.6", 0.7, "20220505"),
    ("1.7", -1.0, "20240101"),  # ties 1.1 on priority and date: the newer id first
    ("1.8", 0.7, None),  # ties 1.5: the newer id first
]
# priority DESC, then study_date DESC with undated last, then id DESC
EXPECTED = ["1.3", "1.6", "1.8", "1.5", "1.4", "1.7", "1.1", "1.2"]


def _insert_studies(store):
    def work(s):
        for i, (uid, priority, date) in enumerate(STUDIES):
            p = Patient(key=f"id:P{i}", patient_id=f"P{i}")
            s.add(p)
            s.flush()
            s.add(
                Study(
                    patient_id=p.id,
                    study_uid=uid,
                    study_date=date,
                    priority=priority,
                    rare_score=None if priority < 0 else priority,
                    n_images=1,
                )
            )

    store.write(work)


def test_worklist_order_puts_undated_studies_after_dated_ones(store):
    _insert_studies(store)
    assert [r.study_uid for r in query_worklist(store)] == EXPECTED
    assert count_worklist(store) == len(EXPECTED)
    # page by page (the GUI's lazy pages): the same order, nothing twice, nothing left out
    pages = [query_worklist(store, limit=3, offset=k) for k in range(0, len(EXPECTED), 3)]
    assert [r.study_uid for page in pages for r in page] == EXPECTED


def test_study_images_put_unnumbered_series_and_images_last(store, tmp_path, write_study):
    from pydicom.uid import generate_uid

    uid = generate_uid()
    first = write_study(tmp_path / "lib" / "a", 3, study_uid=uid)
    second = write_study(tmp_path / "lib" / "b", 2, study_uid=uid)
    for _ in scan(store, [tmp_path / "lib"]):
        pass

    def renumber(s):
        ids = {str(p): s.scalar(select(Image.id).where(Image.path == str(p))) for p in first}
        series = {
            folder: s.scalar(select(Image.series_id).where(Image.path == str(paths[0])))
            for folder, paths in (("a", first), ("b", second))
        }
        # series b has no number, series a is 7; in a: instance numbers 2, none, 1
        s.execute(update(Series).where(Series.id == series["b"]).values(series_number=None))
        s.execute(update(Series).where(Series.id == series["a"]).values(series_number=7))
        for path, number in zip(first, (2, None, 1), strict=True):
            s.execute(
                update(Image).where(Image.id == ids[str(path)]).values(instance_number=number)
            )
        return s.scalar(select(Series.study_id).where(Series.id == series["a"]))

    study_id = store.write(renumber)
    got = [row.path for row in study_images(store, study_id)]
    # series 7 first: instance 1, then 2, then the image without a number; then series b (no
    # number), its images by instance number 1, 2
    assert got == [str(p) for p in (first[2], first[0], first[1], *second)]
    # the viewer's own read (sorted in Python) gives the same order
    from cxrlt_desktop.ui.store_access import study_images as viewer_images

    assert [e.path for e in viewer_images(store, uid)] == got


def test_worklist_text_filter_ignores_ascii_case(store):
    _insert_studies(store)

    def name(s):
        s.execute(update(Patient).where(Patient.key == "id:P3").values(patient_name="Doe^Jane"))

    store.write(name)
    assert [r.study_uid for r in query_worklist(store, text="doe^jane", show_phi=True)] == ["1.4"]
    assert [r.study_uid for r in query_worklist(store, text="DOE", show_phi=True)] == ["1.4"]
    assert query_worklist(store, text="doe") == []  # names are searched only with PHI shown


def test_worklist_text_filter_ignores_case_beyond_ascii(store):
    """SQLite's built-in lower() and LIKE fold ASCII letters only; the store registers a
    Unicode lower() on its SQLite connections, so both dialects find MÜLLER from 'müller'."""
    _insert_studies(store)

    def name(s):
        s.execute(update(Patient).where(Patient.key == "id:P3").values(patient_name="MÜLLER^Jörg"))

    store.write(name)
    assert [r.study_uid for r in query_worklist(store, text="müller", show_phi=True)] == ["1.4"]
    assert [r.study_uid for r in query_worklist(store, text="JÖRG", show_phi=True)] == ["1.4"]
