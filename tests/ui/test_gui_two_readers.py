"""Two readers, two workstations, one library: two MainWindow instances (offscreen), each with
its own store (connections) on one database, PostgreSQL (LISTEN/NOTIFY) and SQLite
(PRAGMA data_version). Nothing here calls a refresh: what one window writes must reach the
other through the change feed.

- A verdict in window A appears in window B's findings panel and worklist status.
- Opening a study in A shows "being read by dr A" in B's worklist; switching and closing clear it.
- A study scanned by a third program appears in both worklists.
"""

from __future__ import annotations

import pytest
from gui_helpers import shared_library
from sqlalchemy import select

from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import Study

WAIT_MS = 20_000  # an upper bound for a failing test, not a timing claim
FINDING = "Pneumothorax"


@pytest.fixture(params=["sqlite", "postgresql"])
def library_url(request, tmp_path):
    """A library with two phantom studies, on each dialect."""
    return shared_library(request, tmp_path, 2)


@pytest.fixture
def workstation(qtbot, tmp_path):
    """workstation(url, reader) -> a shown MainWindow over a store of its own."""
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.app import create_main_window

    made = []

    def make(url: str, reader: str):
        store = open_store(url)
        window = create_main_window(
            store,
            Settings(reviewer=reader),
            settings_path=tmp_path / f"{reader}.toml",
            first_start_dialog=False,
        )
        qtbot.addWidget(window)
        window.show()
        made.append((window, store))
        return window

    yield make
    for window, store in made:
        window.close()
        store.close()


def _study_uids(url: str) -> list[str]:
    st = open_store(url)
    try:
        with st.session() as s, s.begin():
            return s.scalars(select(Study.study_uid).order_by(Study.id)).all()
    finally:
        st.close()


def _row_text(window, uid: str) -> tuple[str, str]:
    """(status cell, "being read by" mark) of a study's worklist row ("" when not listed)."""
    model = window.worklist_model
    row = model.row_for_uid(uid)
    if row < 0:
        return "", ""
    status = model.data(model.index(row, 4))
    return status, model.reader_text(row)


def _open(qtbot, window, uid: str) -> None:
    with qtbot.waitSignal(window.imageDisplayed, timeout=WAIT_MS):
        assert window.select_study(uid)


def test_a_verdict_and_the_reading_mark_reach_the_other_workstation(
    qtbot, library_url, workstation
):
    first, second = _study_uids(library_url)
    a = workstation(library_url, "dr A")
    b = workstation(library_url, "dr B")
    _open(qtbot, b, first)
    _open(qtbot, a, first)

    # Each sees the other reading the study, neither sees itself.
    qtbot.waitUntil(lambda: _row_text(b, first)[1] == "being read by dr A", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: _row_text(a, first)[1] == "being read by dr B", timeout=WAIT_MS)
    status, _ = _row_text(b, first)
    assert status.startswith("unreviewed") and "being read by dr A" in status
    model = b.worklist_model
    tip = model.data(model.index(model.row_for_uid(first), 4), role=3)  # ToolTipRole
    assert tip.startswith("Being read by dr A on ")

    # A's verdict: in B's findings panel and B's worklist status, without a refresh by B.
    assert b.findings.verdicts() == {}
    a.review.set_verdict(FINDING, "present")
    qtbot.waitUntil(lambda: b.findings.verdicts() == {FINDING: "present"}, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: _row_text(b, first)[0].startswith("reviewed"), timeout=WAIT_MS)
    # ... and B overruling it comes back to A the same way (last writer wins).
    b.review.set_verdict(FINDING, "absent")
    qtbot.waitUntil(lambda: a.findings.verdicts() == {FINDING: "absent"}, timeout=WAIT_MS)

    # A moves to the other study: the mark moves with it.
    _open(qtbot, a, second)
    qtbot.waitUntil(lambda: _row_text(b, first)[1] == "", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: _row_text(b, second)[1] == "being read by dr A", timeout=WAIT_MS)

    # A's window closes: its mark goes with it.
    a.close()
    qtbot.waitUntil(lambda: _row_text(b, second)[1] == "", timeout=WAIT_MS)
    assert _row_text(b, first)[1] == ""


def test_a_study_scanned_elsewhere_appears_in_the_worklist(
    qtbot, library_url, workstation, tmp_path
):
    from cxrlt_desktop.demo.phantoms import write_demo_data

    a = workstation(library_url, "dr A")
    assert a.worklist_model.rowCount() == 2
    write_demo_data(tmp_path / "more", n=1, seed=9, size=330)
    other = open_store(library_url)  # the department's scanner, another program
    try:
        for _ in scan(other, [tmp_path / "more"]):
            pass
    finally:
        other.close()
    qtbot.waitUntil(lambda: a.worklist_model.rowCount() == 3, timeout=WAIT_MS)


def test_a_workstation_that_lost_its_listener_rereads_everything(
    qtbot, postgres_url, tmp_path, workstation
):
    """PostgreSQL does not replay notifications: a verdict committed while B's listening
    connection was down reaches B's panel and worklist when the listener is back."""
    import threading

    from sqlalchemy import text

    from cxrlt_desktop.demo.phantoms import write_demo_data

    write_demo_data(tmp_path / "in", n=1, seed=5, size=330)
    st = open_store(postgres_url)
    for _ in scan(st, [tmp_path / "in"]):
        pass
    st.close()
    [uid] = _study_uids(postgres_url)
    a = workstation(postgres_url, "dr A")
    b = workstation(postgres_url, "dr B")
    _open(qtbot, a, uid)
    _open(qtbot, b, uid)
    feed = b.live.feed
    assert feed.connected.wait(WAIT_MS / 1000)
    back = threading.Event()  # B's listener reconnects only when the test says so
    connect = feed._connect_postgresql
    feed._connect_postgresql = lambda: (back.wait(WAIT_MS / 1000), connect())[1]
    with a.store.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": feed.backend_pid})
    qtbot.waitUntil(lambda: not feed.connected.is_set(), timeout=WAIT_MS)
    a.review.set_verdict(FINDING, "uncertain")  # its notification reaches no one of B's
    qtbot.wait(300)
    assert b.findings.verdicts() == {}
    back.set()
    qtbot.waitUntil(lambda: b.findings.verdicts() == {FINDING: "uncertain"}, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: _row_text(b, uid)[0].startswith("reviewed"), timeout=WAIT_MS)
    assert feed.reconnects == 1
