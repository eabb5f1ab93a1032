"""Closing stops the workers and waits for them without freezing the window; nothing owed is
lost: a re-sort cut short by the close is finished at the next start, and a scoring job that
still used the old thresholds is followed by a re-sort."""

from __future__ import annotations

import threading
import time

import pytest
from gui_helpers import independent_study_scores

from cxrlt_desktop.demo.phantoms import write_demo_data
from cxrlt_desktop.library.triage import retriage_pending
from cxrlt_desktop.ui import retriage_runner

JOB_TIMEOUT_MS = 600_000
NEW = {"Mass": 0.001, "Pneumothorax": 0.002}


@pytest.fixture
def scored_window(make_scored_window):
    return make_scored_window(3)


def _assert_sorted_for(qtbot, window, store, thresholds) -> None:
    with qtbot.waitSignal(window.worklistRefreshed, timeout=30_000):
        window.refresh_worklist()
    want = independent_study_scores(store, thresholds)
    shown = {r.study_uid: r.rare_score for r in window.worklist_model.rows()}
    assert shown.keys() == want.keys()
    for uid, score in want.items():
        assert shown[uid] == pytest.approx(score, rel=1e-5)


def test_a_re_sort_cut_short_by_closing_resumes_at_the_next_start(
    qtbot, scored_window, make_window, store, monkeypatch
):
    real = retriage_runner.retriage

    def held_until_stopped(store, thresholds, *, should_stop):
        # A re-sort still running when the window closes (bounded: the test must not hang).
        deadline = time.monotonic() + 20
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(0.01)
        return real(store, thresholds, should_stop=should_stop)

    monkeypatch.setattr(retriage_runner, "retriage", held_until_stopped)
    window = scored_window
    window.settings.thresholds = dict(NEW)
    window.retriage.start()
    t0 = time.perf_counter()
    window.close()
    assert time.perf_counter() - t0 < 1.0  # close returns at once ...
    assert window.isVisible()  # ... and the window stays until the re-sort has stopped
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.retriage.lane.busy
    assert retriage_pending(store)  # recorded, not lost

    monkeypatch.setattr(retriage_runner, "retriage", real)
    again = make_window(window.settings)  # the next start finishes it
    with qtbot.waitSignal(again.retriaged, timeout=60_000) as done:
        pass
    assert done.args == [""] and not retriage_pending(store)
    _assert_sorted_for(qtbot, again, store, NEW)


def test_a_scoring_job_with_the_old_thresholds_is_followed_by_a_re_sort(
    qtbot, scored_window, store, tmp_path, monkeypatch
):
    window = scored_window
    predictor = window.predictors.loaded()
    resorted = threading.Event()
    scored: list[bool] = []
    real_predict = predictor.predict_paths

    def predict_after_the_re_sort(*args, **kwargs):
        # The job scores only once the re-sort for the new thresholds is over (bounded wait).
        scored.append(resorted.wait(30))
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict_paths", predict_after_the_re_sort)
    window.retriaged.connect(lambda _error: resorted.set())
    more = tmp_path / "more"  # other studies than the first folder's (another seed)
    write_demo_data(more, n=3, seed=11, size=330)
    window.open_paths([more])
    assert window.jobs.is_running()
    window.settings.thresholds = dict(NEW)  # as Settings > OK does while the job runs
    window.retriage.start(owed=window.jobs.is_running())
    with qtbot.waitSignal(window.jobFinished, timeout=JOB_TIMEOUT_MS):
        pass
    assert resorted.is_set() and scored  # the first re-sort ended before the job scored
    qtbot.waitUntil(
        lambda: not window.retriage.lane.busy and not retriage_pending(store), timeout=60_000
    )
    _assert_sorted_for(qtbot, window, store, NEW)  # the images scored last follow NEW too
