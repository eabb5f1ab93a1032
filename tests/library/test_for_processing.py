"""FOR PROCESSING images (Presentation Intent Type): accepted and scored, marked, and kept out of
the rare-finding flag unless the library's flag_for_processing option is on. SQLite and
PostgreSQL, real files written with pydicom."""

from __future__ import annotations

import pytest
from lib_triage_helpers import (
    image_id,
    model_set,
    probs,
    record_prediction,
    scan_folder,
    worklist_by_patient,
    write_image,
)
from pydicom.uid import generate_uid

from cxrlt_desktop.library import query_worklist
from cxrlt_desktop.library.triage import (
    FOR_PROCESSING,
    flag_for_processing,
    is_for_processing,
    retriage,
    set_flag_for_processing,
)
from engine.classes import DEFAULT_THRESHOLDS, RARE_CLASSES


def _hand_rare(p: dict[str, float]) -> float:
    return max(p.get(c, 0.01) / DEFAULT_THRESHOLDS[c] for c in RARE_CLASSES)


@pytest.fixture
def library(any_store, tmp_path):
    """Patient P: one image for presentation. Patient F: one study with a FOR PROCESSING image
    and an image without Presentation Intent Type."""
    folder = tmp_path / "in"
    folder.mkdir()
    p = write_image(folder, "p", patient="P", intent="FOR PRESENTATION")
    f_study = generate_uid()
    fp = write_image(folder, "f_raw", patient="F", intent=FOR_PROCESSING, study_uid=f_study)
    f2 = write_image(folder, "f_plain", patient="F", study_uid=f_study)
    scan_folder(any_store, folder)
    ids = {k: image_id(any_store, path) for k, path in (("p", p), ("fp", fp), ("f2", f2))}
    return any_store, ids


def test_for_processing_is_scanned_usable_and_marked(library):
    from cxrlt_desktop.store.models import Image

    store, ids = library
    with store.session() as s, s.begin():
        images = {k: s.get(Image, i) for k, i in ids.items()}
        assert all(img.usable for img in images.values())
        assert images["fp"].meta["PresentationIntentType"] == FOR_PROCESSING
        assert [k for k, img in images.items() if is_for_processing(img.meta)] == ["fp"]
    rows = worklist_by_patient(store)
    assert rows["F"].for_processing and not rows["P"].for_processing
    assert rows["F"].to_json()["for_processing"] is True


def test_for_processing_image_is_scored(library, predictor):
    from cxrlt_desktop.library import score_library
    from cxrlt_desktop.store.models import Image

    store, ids = library
    for _ in score_library(store, predictor):
        pass
    with store.session() as s, s.begin():
        assert s.get(Image, ids["fp"]).current_prediction_id is not None


def test_for_processing_does_not_flag_unless_the_option_is_on(library):
    store, ids = library
    m = model_set(store, "models")
    high = probs(Pneumothorax=0.9)
    record_prediction(store, ids["p"], m, high)
    record_prediction(store, ids["fp"], m, high)
    record_prediction(store, ids["f2"], m, probs())
    retriage(store, None)
    rows = worklist_by_patient(store)
    assert rows["P"].rare_score == pytest.approx(_hand_rare({"Pneumothorax": 0.9}))
    assert rows["P"].flagged
    # F's score is its plain image's: the FOR PROCESSING one is left out of the flag ...
    assert rows["F"].rare_score == pytest.approx(_hand_rare({}))
    assert not rows["F"].flagged
    # ... and out of the study's findings at or above threshold and its top findings
    assert rows["F"].n_above == 0
    assert all(t["probability"] == pytest.approx(0.01) for t in rows["F"].top_findings)
    # while the finding filter still finds the study (the image's finding is there)
    found = query_worklist(store, finding="Pneumothorax", show_phi=True)
    assert sorted(r.patient for r in found) == ["F", "P"]
    with store.session() as s, s.begin():
        assert flag_for_processing(s) is False

    assert set_flag_for_processing(store, True) == 1  # F re-summarised
    rows = worklist_by_patient(store)
    assert rows["F"].rare_score == pytest.approx(_hand_rare({"Pneumothorax": 0.9}))
    assert rows["F"].flagged and rows["F"].for_processing
    assert rows["F"].n_above == 1
    assert rows["F"].top_findings[0]["finding"] == "Pneumothorax"
    # A retriage keeps the option (it is the library's, not the caller's).
    retriage(store, None)
    assert worklist_by_patient(store)["F"].flagged

    assert set_flag_for_processing(store, True) == 0  # no change
    assert set_flag_for_processing(store, False) == 1
    assert not worklist_by_patient(store)["F"].flagged


def test_two_programs_setting_the_option_at_once(postgres_url):
    """PostgreSQL: a program sets flag_for_processing while another has just inserted it (not yet
    committed): the first waits on the key, gets the unique violation, and reads the other's row
    instead of failing its start."""
    import threading

    from sqlalchemy import text

    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.tables_thresholds import LibrarySetting

    a, b = open_store(postgres_url), open_store(postgres_url)
    try:
        other = b.session()
        other.begin()
        other.add(LibrarySetting(name="flag_for_processing", value=True))
        other.flush()  # inserted, not committed
        out: dict = {}
        worker = threading.Thread(
            target=lambda: out.setdefault("n", set_flag_for_processing(a, True))
        )
        worker.start()
        with b.engine.connect() as c:  # wait until the first program waits on the key
            for _ in range(600):
                waiting = c.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                )
                if waiting:
                    break
                threading.Event().wait(0.05)
        assert waiting, "the first program never waited on the other's row"
        other.commit()
        other.close()
        worker.join(60)
        assert out == {"n": 0}  # the other's value: nothing to change
        with a.session() as s, s.begin():
            assert flag_for_processing(s) is True
    finally:
        a.close()
        b.close()
