"""BackgroundJobs (ui/workers.py): scan, model load and scoring as one worker in the jobs lane."""

from __future__ import annotations

import threading

import pytest
from gui_helpers import make_study_folder

from cxrlt_desktop.ui.background import quit_all, wait_all
from cxrlt_desktop.ui.workers import BackgroundJobs, PredictorCache


def _record(jobs: BackgroundJobs) -> dict[str, list]:
    got: dict[str, list] = {"progress": [], "problems": [], "scanned": [], "models": []}
    jobs.progress.connect(got["progress"].append)
    jobs.problemFound.connect(got["problems"].append)
    jobs.scanFinished.connect(got["scanned"].append)
    jobs.modelsLoaded.connect(got["models"].append)
    return got


def test_scan_only_reports_progress_problems_and_the_count(qtbot, store, tmp_path):
    folder = make_study_folder(tmp_path / "in", None, n_phantoms=2, broken=False)
    (folder / "junk.dcm").write_bytes(b"not an image")
    jobs = BackgroundJobs(store, PredictorCache(None))
    got = _record(jobs)
    with qtbot.waitSignal(jobs.finished, timeout=60_000) as done:
        assert jobs.start([folder], score=False)
        assert jobs.is_running()
    result = done.args[0]
    assert result.ok and not jobs.is_running()
    assert result.scanned == 3 and got["scanned"] == [3]
    assert [(p.path.endswith("junk.dcm"), p.phase) for p in result.problems] == [(True, "scan")]
    assert got["problems"] == result.problems
    assert got["progress"][0].text == "Scanning..."
    assert {p.phase for p in got["progress"]} == {"scan"} and got["progress"][-1].done == 3
    assert got["models"] == [] and result.scored == 0


def test_a_model_that_fails_to_load_ends_the_job_with_its_error(qtbot, store):
    def factory():
        raise RuntimeError("size mismatch for head.weight")

    jobs = BackgroundJobs(store, PredictorCache(factory))
    got = _record(jobs)
    with qtbot.waitSignal(jobs.finished, timeout=60_000) as done:
        jobs.start([])
    result = done.args[0]
    assert result.error == "RuntimeError: size mismatch for head.weight"
    assert not result.cancelled and not result.ok and not jobs.is_running()
    assert [p.phase for p in got["progress"]] == ["load"] and got["models"] == []


def test_cancel_while_the_models_load_skips_scoring_and_the_queued_job(qtbot, store):
    gate, loading = threading.Event(), threading.Event()
    predictor = object()

    def factory():
        loading.set()
        gate.wait(30)
        return predictor

    jobs = BackgroundJobs(store, PredictorCache(factory))
    got = _record(jobs)
    finished = []
    jobs.finished.connect(finished.append)
    assert jobs.start([])
    assert not jobs.start([])  # one job at a time: queued
    qtbot.waitUntil(loading.is_set, timeout=30_000)
    jobs.cancel()  # drops the queued job; scoring is skipped once the models are loaded
    gate.set()
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)
    assert jobs.wait(30_000)
    qtbot.wait(100)
    assert len(finished) == 1 and not jobs.is_running()
    assert finished[0].cancelled and finished[0].error is None and finished[0].scored == 0
    assert got["models"] == [predictor]
    assert [p.phase for p in got["progress"]] == ["load"]


@pytest.fixture(autouse=True)
def _drain():
    yield
    quit_all()
    wait_all(30_000)
