"""The worklist model over a real store: lazy pages, sorting, filters, selection kept by UID."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QTableView
from sqlalchemy import update

N_STUDIES = 450


def _fill(store, n=N_STUDIES):
    from cxrlt_desktop.store.models import Patient, Study

    with store.session(write=True) as s, s.begin():
        for i in range(n):
            p = Patient(key=f"id:P{i:04d}", patient_id=f"P{i:04d}", patient_name=f"Doe^{i}")
            s.add(p)
            s.flush()
            score = (i * 37 % n) / 100.0  # distinct scores in a scrambled order
            s.add(
                Study(
                    patient_id=p.id,
                    study_uid=f"1.2.3.{i}",
                    study_date=f"2024{1 + i % 12:02d}{1 + i % 28:02d}",
                    description="CHEST PA" if i % 3 else "CHEST AP PORTABLE",
                    rare_score=score,
                    priority=score,
                    n_images=1,
                    n_scored=1,
                    n_above=1 if score >= 1.0 else 0,
                    reviewed=i % 5 == 0,
                    review_status="reviewed" if i % 5 == 0 else "unreviewed",
                    top_findings=[
                        {"finding": "Mass", "probability": min(score / 5, 1.0), "threshold": 0.5}
                    ],
                )
            )


@pytest.fixture
def filled(store):
    _fill(store)
    return store


@pytest.fixture
def view(qtbot, filled):
    from cxrlt_desktop.ui.worklist_model import WorklistModel

    model = WorklistModel(filled)
    table = QTableView()
    table.setModel(model)
    table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
    qtbot.addWidget(table)
    model.refresh()
    return table, model


def _scores(model):
    return [r.rare_score for r in model.rows()]


def test_lazy_pages_in_rare_score_order(view):
    from cxrlt_desktop.ui.worklist_model import PAGE_SIZE

    _, model = view
    assert model.rowCount() == PAGE_SIZE
    assert model.canFetchMore()
    model.fetchMore()
    model.fetchMore()
    assert model.rowCount() == N_STUDIES and not model.canFetchMore()
    scores = _scores(model)
    assert scores == sorted(scores, reverse=True)
    assert len({r.study_uid for r in model.rows()}) == N_STUDIES
    flagged = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert flagged[0].startswith("\u2691") and not flagged[-1].startswith("\u2691")


def test_sort_by_date_loads_everything_then_back_to_priority(view, qtbot):
    _, model = view
    date_col = 2
    # 450 studies: more than a synchronous load, so the rows arrive from a worker thread.
    with qtbot.waitSignal(model.refreshed, timeout=30_000):
        model.sort(date_col, Qt.SortOrder.AscendingOrder)
    assert model.rowCount() == N_STUDIES
    dates = [r.study_date for r in model.rows()]
    assert dates == sorted(dates)
    model.sort(0, Qt.SortOrder.DescendingOrder)
    assert model.rowCount() == N_STUDIES
    assert _scores(model) == sorted(_scores(model), reverse=True)
    model.sort(0, Qt.SortOrder.AscendingOrder)
    assert _scores(model) == sorted(_scores(model))


def test_refresh_keeps_selection_on_its_study_while_rows_move(view, filled):
    from cxrlt_desktop.store.models import Study

    table, model = view
    row = 7
    uid = model.study_uid(row)
    sel = table.selectionModel()
    sel.setCurrentIndex(
        model.index(row, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    # New scores arrive: the selected study drops far down, another jumps to the top.
    other = model.study_uid(150)
    with filled.session(write=True) as s, s.begin():
        s.execute(
            update(Study).where(Study.study_uid == uid).values(priority=0.001, rare_score=0.001)
        )
        s.execute(
            update(Study).where(Study.study_uid == other).values(priority=99.0, rare_score=99.0)
        )
    model.refresh()
    assert model.study_uid(0) == other
    new_row = model.row_for_uid(uid)
    assert new_row > row  # the study moved ...
    assert table.currentIndex().row() == new_row  # ... and the selection went with it
    assert [i.row() for i in sel.selectedRows()] == [new_row]
    assert model.index(new_row, 0).data(model_role()) == uid


def model_role():
    from cxrlt_desktop.ui.worklist_model import STUDY_UID_ROLE

    return STUDY_UID_ROLE


def test_filters_status_text_finding_and_phi(view, filled):
    table, model = view
    sel = table.selectionModel()
    model.fetchMore()
    model.fetchMore()
    reviewed_uid = "1.2.3.5"
    sel.setCurrentIndex(
        model.index(model.row_for_uid(reviewed_uid), 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    model.set_filters(status="reviewed")
    assert model.rowCount() == N_STUDIES // 5
    assert all(r.status == "reviewed" for r in model.rows())
    # The selected study is still in the filtered list and still selected.
    assert (
        table.currentIndex().isValid() and table.currentIndex().data(model_role()) == reviewed_uid
    )
    model.set_filters(status="all", text="portable")
    assert model.rowCount() == len([i for i in range(N_STUDIES) if i % 3 == 0])
    model.set_filters(text="")
    assert model.rowCount() > 0
    patient = model.index(0, 1).data()
    assert not patient.startswith("P0")  # pseudonym by default
    model.set_filters(show_phi=True)
    assert model.index(0, 1).data().startswith("P")


def test_background_refresh_of_a_fully_loaded_list_keeps_selection(view, filled, qtbot):
    from cxrlt_desktop.store.models import Study

    table, model = view
    with qtbot.waitSignal(model.refreshed, timeout=30_000):
        model.sort(2, Qt.SortOrder.AscendingOrder)  # loads all 450: refreshes go to a thread
    uid = model.study_uid(10)
    table.selectionModel().setCurrentIndex(
        model.index(10, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    with filled.session(write=True) as s, s.begin():
        s.execute(update(Study).where(Study.study_uid == uid).values(study_date="19990101"))
    with qtbot.waitSignal(model.refreshed, timeout=30_000):
        model.refresh_async()
    assert model.rowCount() == N_STUDIES
    assert model.study_uid(0) == uid  # earliest date now
    assert table.currentIndex().row() == 0
    # Back to priority order: derived in memory from the loaded rows, equal to the query's.
    model.sort(0, Qt.SortOrder.DescendingOrder)
    in_memory = [r.study_uid for r in model.rows()]
    model.refresh(reset_paging=True)
    while model.canFetchMore():
        model.fetchMore()
    assert [r.study_uid for r in model.rows()] == in_memory
    model.shutdown()


def _mark_reviewed(store, study_uid: str) -> None:
    from cxrlt_desktop.store.models import Study

    with store.session(write=True) as s, s.begin():
        s.execute(
            update(Study)
            .where(Study.study_uid == study_uid)
            .values(reviewed=True, review_status="reviewed")
        )


def _select(table, model, row):
    table.selectionModel().setCurrentIndex(
        model.index(row, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )


def test_selected_study_leaving_the_filter_stays_until_the_user_moves(view, filled):
    from cxrlt_desktop.library.worklist import count_worklist

    table, model = view
    model.set_filters(status="unreviewed")
    n = count_worklist(filled, status="unreviewed")
    _select(table, model, 150)
    uid = model.study_uid(150)
    _mark_reviewed(filled, uid)
    model.refresh()  # what a verdict triggers
    assert model.study_uid(table.currentIndex().row()) == uid
    # Paging goes on as if the kept row were not there: no study skipped, none twice.
    while model.canFetchMore():
        model.fetchMore()
    uids = [r.study_uid for r in model.rows()]
    assert len(uids) == len(set(uids)) == n  # n - 1 unreviewed + the kept one
    _select(table, model, 0 if model.study_uid(0) != uid else 1)
    model.refresh()
    assert model.row_for_uid(uid) == -1 and model.rowCount() == n - 1
    # An explicit filter change applies at once, even to the selected study.
    _select(table, model, 3)
    other = model.study_uid(3)
    _mark_reviewed(filled, other)
    model.set_filters(status="unreviewed")
    assert model.row_for_uid(other) == -1


def test_refresh_of_many_scrolled_rows_runs_in_the_worker(qtbot, store):
    from cxrlt_desktop.ui.worklist_model import ASYNC_ROWS, PAGE_SIZE, WorklistModel

    _fill(store, n=1000)
    model = WorklistModel(store)
    model.refresh()
    while model.rowCount() < 3 * PAGE_SIZE:
        model.fetchMore()
    assert model.rowCount() > ASYNC_ROWS and model.canFetchMore()  # scrolled, not exhausted
    before = [r.study_uid for r in model.rows()]
    with qtbot.waitSignal(model.refreshed, timeout=30_000):
        model.refresh_async()
        assert model._inflight  # the query runs off the GUI thread
    assert [r.study_uid for r in model.rows()] == before
    # A page loaded while a background refresh runs is not dropped by its result.
    with qtbot.waitSignal(model.refreshed, timeout=30_000):
        model.refresh_async()
        model.fetchMore()
        grown = [r.study_uid for r in model.rows()]
    qtbot.waitUntil(lambda: not model._inflight, timeout=30_000)
    assert [r.study_uid for r in model.rows()] == grown and len(grown) == 4 * PAGE_SIZE
    model.shutdown()


def test_page_loaded_during_a_column_sort_keeps_the_sort(qtbot, store):
    from cxrlt_desktop.ui.worklist_model import WorklistModel

    _fill(store, n=1000)
    model = WorklistModel(store)
    model.refresh()
    with qtbot.waitSignal(model.refreshed, timeout=30_000):
        model.sort(2, Qt.SortOrder.AscendingOrder)  # 1,000 rows: loads everything in a worker
        assert model._inflight
        model.fetchMore()  # the reader scrolls to the bottom meanwhile
    qtbot.waitUntil(lambda: not model._inflight, timeout=30_000)
    dates = [r.study_date for r in model.rows()]
    assert len(dates) == 1000 and not model.canFetchMore()
    assert dates == sorted(dates)
    model.shutdown()


def test_study_leaving_the_filter_is_not_searched_for_in_the_whole_list(view, filled):
    from cxrlt_desktop.ui.worklist_model import PAGE_SIZE

    table, model = view
    model.set_filters(status="unreviewed")
    _select(table, model, 5)
    uid = model.study_uid(5)
    _mark_reviewed(filled, uid)
    limits = []
    query = model._query

    def counting(*a, **k):
        limits.append(k["limit"])
        return query(*a, **k)

    model._query = counting
    model.refresh()
    assert model.study_uid(table.currentIndex().row()) == uid
    assert max(limits) == PAGE_SIZE  # no widening to the whole list on the GUI thread
