"""Reading down the worklist from memory: once a study is on screen, the next study's first
image and, in the comparison layout, its prior are decoded ahead, so PgDown shows both at once
(within the key press, before any decode could finish). Real window, real scan of copies of
pydicom-data's RG1 radiograph filed as two patients with a prior each."""

from __future__ import annotations

from gui_helpers import refile
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest


def test_pgdown_shows_the_next_study_and_its_prior_from_memory(
    qtbot, make_window, store, tmp_path, rg1_uncr
):
    from cxrlt_desktop.library import scan
    from cxrlt_desktop.library.priors import prior_studies
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.store_access import study_images

    root = "1.2.826.0.1.3680043.8.498.99"
    for k, patient in enumerate(("PA", "PB")):
        refile(
            rg1_uncr,
            tmp_path / "in" / patient / "new.dcm",
            f"{root}{k}1",
            "20200101",
            PatientID=patient,
        )
        refile(
            rg1_uncr,
            tmp_path / "in" / patient / "old.dcm",
            f"{root}{k}0",
            "20100101",
            PatientID=patient,
        )
    for _ in scan(store, [tmp_path / "in"]):
        pass
    settings = Settings(reviewer="Dr Test")
    settings.hanging = {"layout": "comparison", "docks": []}
    window = make_window(settings)
    window.resize(1400, 800)
    window.show()
    reading = window.reading
    assert reading.comparison()
    model = window.worklist_model
    uids = [model.study_uid(r) for r in range(model.rowCount())]
    # a row whose next row is a study with a prior in the library
    row = next(r for r in range(len(uids) - 1) if prior_studies(store, uids[r + 1]))
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_row(row)
    nxt = uids[row + 1]
    first = study_images(store, nxt)[0]
    assert not window.image_loader.cached(first.image_id)
    # the read-ahead starts once the display has settled
    qtbot.waitUntil(lambda: window.image_loader.cached(first.image_id), timeout=30_000)
    prior_first = prior_studies(store, nxt)[0].images[0]
    qtbot.waitUntil(lambda: reading.prior.loader.cached(prior_first.image_id), timeout=30_000)

    shown, priors = [], []
    window.imageDisplayed.connect(shown.append)
    reading.prior.priorShown.connect(priors.append)
    QTest.keyClick(window.worklist, Qt.Key.Key_PageDown)  # no event loop turn for a decode
    assert window.current_study_uid() == nxt
    assert shown == [first.image_id]
    assert priors == [prior_studies(store, nxt)[0].study_uid]
