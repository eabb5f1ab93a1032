"""Settings > Department (database URL checked by connecting, scoring by workers, reader name)
and a window whose scoring is done by the department's workers (no model loaded; scans queued;
the queue's progress in the status bar). Real PostgreSQL and SQLite databases."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtWidgets import QDialog

from cxrlt_desktop.store import open_store

WAIT_MS = 60_000  # an upper bound for a failing test, not a timing claim


def _dialog(qtbot, settings):
    from cxrlt_desktop.ui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(settings)
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def _ok(qtbot, dlg) -> tuple[bool, str]:
    with qtbot.waitSignal(dlg.validationFinished, timeout=WAIT_MS) as blocker:
        dlg._on_ok()
    return tuple(blocker.args)


def _fill(dlg, url: str, reader: str, scoring: str) -> None:
    dlg.database.setText(url)
    dlg.reviewer.setText(reader)
    dlg.scoring.setCurrentIndex(dlg.scoring.findData(scoring))


def _refused_keeping_values(qtbot, dlg, url: str, words: str) -> None:
    _fill(dlg, url, "dr Keep", "workers")
    ok, text = _ok(qtbot, dlg)
    assert not ok and words in text
    assert words in dlg.database_status.text()  # shown where the URL is
    assert dlg.tabs.tabText(dlg.tabs.currentIndex()) == "Department"
    assert dlg.result() != QDialog.DialogCode.Accepted and dlg.result_settings is None
    # Nothing the user entered is lost.
    assert dlg.database.text() == url
    assert dlg.reviewer.text() == "dr Keep"
    assert dlg.scoring.currentData() == "workers"


def test_unreachable_or_empty_server_databases_are_refused(qtbot, postgres_url):
    from cxrlt_desktop.settings import Settings

    dlg = _dialog(qtbot, Settings())
    missing = postgres_url.replace("/cxrlt_test_", "/cxrlt_missing_")
    _refused_keeping_values(qtbot, dlg, missing, "does not exist")
    _refused_keeping_values(qtbot, dlg, postgres_url, "an empty database")  # nothing migrated


def test_a_library_of_another_version_is_refused(qtbot, tmp_path):
    from sqlalchemy import text

    from cxrlt_desktop.settings import Settings

    url = f"sqlite:///{(tmp_path / 'newer.db').as_posix()}"
    st = open_store(url)
    st.write(lambda s: s.execute(text("UPDATE alembic_version SET version_num = '9999_future'")))
    st.close()
    dlg = _dialog(qtbot, Settings())
    _refused_keeping_values(qtbot, dlg, url, "newer CXR-LT Desktop")


def test_a_department_library_is_accepted_without_loading_models(
    qtbot, postgres_url, model_settings
):
    """Scoring by workers: the models in the settings are not loaded to check them."""
    open_store(postgres_url).close()  # the department's library: migrated
    dlg = _dialog(qtbot, model_settings)
    _fill(dlg, postgres_url, "dr Dept", "workers")
    dlg.check_database_button.click()  # the Check button says what is there
    qtbot.waitUntil(
        lambda: dlg.database_status.text().startswith("PostgreSQL library, schema revision"),
        timeout=WAIT_MS,
    )
    assert _ok(qtbot, dlg) == (True, "")
    new = dlg.result_settings
    assert (new.database, new.reviewer, new.scoring) == (postgres_url, "dr Dept", "workers")
    assert dlg.loaded_predictor is None  # no model loaded
    assert new.task1_checkpoints == model_settings.task1_checkpoints  # the rest is kept


def test_scoring_by_workers_queues_scans_and_shows_the_queue(
    qtbot, store_url, make_window_on, model_settings, tmp_path
):
    """The window loads no model (even with models and a predictor factory given); what it
    scans is queued for the active model set; the status bar shows the queue and the worker."""
    from sqlalchemy import func, select

    from cxrlt_desktop.demo.phantoms import write_demo_data
    from cxrlt_desktop.library.queue import heartbeat
    from cxrlt_desktop.store.models import Image, ModelSet
    from cxrlt_desktop.store.tables_department import ScoreJob

    st = open_store(store_url)
    ms = st.write(lambda s: _add_model_set(s, ModelSet))
    heartbeat(st, "gpu-server-1", model_set_id=ms, starting=True)  # a department worker
    settings = dataclasses.replace(model_settings, scoring="workers")
    window = make_window_on(st, settings)
    assert window.is_scoring_by_workers() and not window.predictors.configured
    write_demo_data(tmp_path / "in", n=2, seed=4, size=330)
    with qtbot.waitSignal(window.jobFinished, timeout=WAIT_MS):
        window.open_paths([tmp_path / "in"])
    with st.session() as s, s.begin():
        usable = s.scalar(select(func.count()).select_from(Image).where(Image.usable.is_(True)))
    assert usable > 0
    qtbot.waitUntil(lambda: window.queue.last is not None, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: (
            window.status_bar.queue_label.text()
            == f"Queue: {usable} queued, 0 being scored, 0 done | 1 worker"
        ),
        timeout=WAIT_MS,
    )
    with st.session() as s, s.begin():
        jobs = s.execute(select(ScoreJob.model_set_id, ScoreJob.state)).all()
    assert jobs == [(ms, "queued")] * usable  # queued once each, for the workers' model set
    assert window.status_bar.queue_label.isVisible()
    assert "department" in window.status_bar.model_status.text()


def _add_model_set(s, model):  # noqa: ANN001, ANN202
    row = model(key="department-models", description={"models": [], "settings": {}})
    s.add(row)
    s.flush()
    return row.id


@pytest.fixture
def make_window_on(qtbot, tmp_path):
    """make_window_on(store, settings) -> a shown window (closed at the end)."""
    from cxrlt_desktop.ui.app import create_main_window

    made = []

    def make(store, settings):
        w = create_main_window(
            store,
            settings,
            settings_path=tmp_path / "settings.toml",
            first_start_dialog=False,
            engine_overrides={"image_size": 64},
        )
        qtbot.addWidget(w)
        w.show()
        made.append((w, store))
        return w

    yield make
    for w, store in made:
        w.close()
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    return request.getfixturevalue("postgres_url")
