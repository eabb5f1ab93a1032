"""The Priors & PACS dock against a real Orthanc: opening a study lists the patient's earlier
studies in the library; "Fetch priors" retrieves the earlier CR study the library lacks (in the
background) and lists it; "Send results" stores the study's AI-result SR and heatmap in Orthanc
and shows each send."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import Qt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicomnode"))
from gui_helpers import refile  # noqa: E402
from orthanc_peer import start_orthanc  # noqa: E402

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
IN_LIBRARY = "1.2.826.0.1.3680043.8.498.88001"  # an earlier study the library holds
ON_PACS = "1.2.826.0.1.3680043.8.498.88101"  # an earlier study only Orthanc holds


@pytest.fixture
def orthanc(tmp_path, rg1_uncr):
    o = start_orthanc(tmp_path / "orthanc", {"cxrlt": ("CXRLT", 1)})
    try:
        o.upload(rg1_uncr)
        o.upload(refile(rg1_uncr, tmp_path / "pacs" / "prior.dcm", ON_PACS, "20020314"))
        yield o
    finally:
        o.stop()


def test_priors_dock_lists_fetches_and_sends(
    qtbot, make_window, store, tmp_path, orthanc, rg1_uncr, predictor
):
    from cxrlt_desktop.library import scan, score_library
    from cxrlt_desktop.settings import Settings

    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(rg1_uncr, folder / "rg1.dcm")
    refile(rg1_uncr, folder / "old" / "old.dcm", IN_LIBRARY, "20010101")
    for _ in scan(store, [folder]):
        pass
    for _ in score_library(store, predictor):
        pass
    settings = Settings(
        reviewer="Dr Test",
        pacs={"orthanc": {"aet": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}},
    )
    settings.dicom_node = dict(settings.dicom_node, inbox=tmp_path / "inbox", min_free_mb=1)
    window = make_window(settings)
    window.show()
    dock = window.priors_dock
    dock.show()
    dock.raise_()
    assert dock.destination.currentText() == "orthanc"

    window.select_study(RG1_STUDY)
    qtbot.waitUntil(lambda: dock.prior_uids() == [IN_LIBRARY], timeout=30_000)
    assert dock.fetch_button.isEnabled() and dock.send_button.isEnabled()

    with qtbot.waitSignal(dock.runner.finished, timeout=120_000) as done:
        qtbot.mouseClick(dock.fetch_button, Qt.MouseButton.LeftButton)
    kind, text, problems = done.args
    assert kind == "fetch" and "1 retrieved" in text, (text, problems)
    qtbot.waitUntil(lambda: dock.prior_uids() == [ON_PACS, IN_LIBRARY], timeout=30_000)
    fetched = sorted((tmp_path / "inbox" / ON_PACS).rglob("*.dcm"))
    assert len(fetched) == 1
    assert pydicom.dcmread(fetched[0]).PixelData == pydicom.dcmread(rg1_uncr).PixelData

    with qtbot.waitSignal(dock.runner.finished, timeout=300_000) as done:
        dock.send_button.click()
    kind, text, problems = done.args
    assert kind == "send" and "2 sent, 0 failed" in text, (text, problems)
    qtbot.waitUntil(lambda: len(dock.sent_rows()) == 2, timeout=30_000)
    rows = dock.sent_rows()
    assert sorted(r[0] for r in rows) == ["ai-sr", "heatmap"]
    assert all(r[2] == "orthanc" and r[3] == "sent" for r in rows)
    qtbot.waitUntil(lambda: dock.send_button.isEnabled(), timeout=30_000)
    dock.resize(900, 420)
    dock.grab().save(str(tmp_path / "priors_dock.png"))


def test_a_closed_dock_reads_the_study_when_opened(qtbot, make_window, store, tmp_path, rg1_uncr):
    """Closed (as by default), the dock reads nothing while studies are opened; opened, it
    lists the open study's priors."""
    from cxrlt_desktop.library import scan
    from cxrlt_desktop.settings import Settings

    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(rg1_uncr, folder / "rg1.dcm")
    refile(rg1_uncr, folder / "old" / "old.dcm", IN_LIBRARY, "20010101")
    for _ in scan(store, [folder]):
        pass
    window = make_window(Settings(reviewer="Dr Test"))
    window.show()
    dock = window.priors_dock
    dock.hide()
    with qtbot.waitSignal(window.studyOpened, timeout=30_000):
        window.select_study(RG1_STUDY)
    assert dock.prior_uids() == []
    dock.show()
    assert dock.prior_uids() == [IN_LIBRARY]
