"""A file that takes the scoring process down is not retried forever.

Each image's scoring is committed to ``score_attempt`` before its file is decoded; a process
that dies leaves those rows behind. The tests leave them the way a dead process does: in
process, a decode that raises a BaseException no handler catches (nothing after the decode
runs, as after a crash), and in a subprocess, a real SIGKILL of the scorer while it decodes the
file. Real store, real scorer, real model and files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from library_helpers import model_args
from sqlalchemy import func, select

import engine.imageio
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import (
    INTERRUPT_LIMIT,
    INTERRUPTED,
    retry_failed,
    score_library,
)
from cxrlt_desktop.store.models import Image, Prediction, ScoreAttempt, ScoreFailure

REASON_3 = (
    "scoring was interrupted 3 times on this file; it is skipped until it is rescanned or retried"
)


class _Died(BaseException):
    """What the process would do at this point: stop, with nothing after it run."""


def _scan(store, folder):
    for _ in scan(store, [folder]):
        pass


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_store


@pytest.fixture
def library(store, tmp_path, write_study):
    """Eight images in two studies; ``crash`` is the fifth in scoring (id) order."""
    paths = write_study(tmp_path / "lib" / "a", 4, patient_id="A")
    paths += write_study(tmp_path / "lib" / "b", 4, patient_id="B")
    _scan(store, tmp_path / "lib")
    return store, paths, paths[4]


def _attempts(store):
    with store.session() as s, s.begin():
        return dict(
            s.execute(
                select(Image.path, ScoreAttempt.started).join(
                    Image, Image.id == ScoreAttempt.image_id
                )
            ).all()
        )


def _predicted(store):
    with store.session() as s, s.begin():
        return dict(
            s.execute(
                select(Image.path, func.count(Prediction.id))
                .join(Prediction, Prediction.image_id == Image.id)
                .group_by(Image.path)
            ).all()
        )


def test_the_limit_message():
    assert INTERRUPT_LIMIT == 3 and INTERRUPTED.format(n=3) == REASON_3


def test_a_file_that_kills_every_start_is_given_up_after_three(library, predictor, monkeypatch):
    store, paths, crash = library
    real = engine.imageio.read_source
    decoded: list[str] = []

    def dies_on_crash(path, **kw):
        decoded.append(str(path))
        if str(path) == str(crash):
            raise _Died
        return real(path, **kw)

    monkeypatch.setattr(engine.imageio, "read_source", dies_on_crash)
    for start in range(1, INTERRUPT_LIMIT + 1):
        with pytest.raises(_Died):
            list(score_library(store, predictor, batch_size=2))
        left = _attempts(store)
        assert left[str(crash)] == start  # committed before the decode that died
        # From the second start on, the file is scored alone: no other image dies with it.
        assert all(n == 1 for p, n in left.items() if p != str(crash))
        assert _predicted(store).get(str(crash)) is None
    decoded.clear()
    progs = list(score_library(store, predictor, batch_size=2))
    assert str(crash) not in decoded  # given up before any decode
    assert progs[0].last_errors == [(str(crash), REASON_3)]
    last = progs[-1]
    assert last.finished and last.failed == 1 and last.already_scored + last.done == 7
    scored = _predicted(store)
    assert sorted(scored) == sorted(str(p) for p in paths if p != crash)
    assert set(scored.values()) == {1}
    assert _attempts(store) == {}
    with store.session() as s, s.begin():
        fails = s.execute(select(Image.path, ScoreFailure.reason).join(Image)).all()
    assert fails == [(str(crash), REASON_3)]

    # The next start does not try it again ...
    decoded.clear()
    progs = list(score_library(store, predictor, batch_size=2))
    assert str(crash) not in decoded and progs[-1].done == progs[-1].failed == 0
    # ... until it is retried (the decoder was fixed, say).
    monkeypatch.setattr(engine.imageio, "read_source", real)
    with store.session() as s, s.begin():
        crash_id = s.scalar(select(Image.id).where(Image.path == str(crash)))
    assert retry_failed(store, [crash_id]) == 1
    progs = list(score_library(store, predictor, batch_size=2))
    assert progs[-1].done == 1 and _predicted(store)[str(crash)] == 1


def test_a_start_that_dies_before_its_write_leaves_the_decoded_images_in_flight(
    library, predictor, monkeypatch
):
    """Decoded is not done: a death in the compute or the commit counts as well."""
    import cxrlt_desktop.library.scoring as scoring

    store, paths, _crash = library

    def dies_in_the_commit(*_args, **_kw):
        raise _Died

    with monkeypatch.context() as m:
        m.setattr(scoring, "_write_batch", dies_in_the_commit)
        with pytest.raises(_Died):
            list(score_library(store, predictor, batch_size=2))
    left = _attempts(store)
    assert left[str(paths[0])] == left[str(paths[1])] == 1 and _predicted(store) == {}
    progs = list(score_library(store, predictor, batch_size=2))
    assert progs[-1].done == len(paths) and progs[-1].failed == 0
    assert _attempts(store) == {}


def test_a_rescan_that_sees_the_file_changed_gives_it_a_fresh_start(library, predictor):
    store, _paths, crash = library
    with store.session() as s, s.begin():
        crash_id = s.scalar(select(Image.id).where(Image.path == str(crash)))
    list(score_library(store, predictor))  # registers the model set; everything scored
    with store.session() as s, s.begin():
        ms = s.scalar(select(Prediction.model_set_id).limit(1))
    # What three dead starts leave for an image of version 1 ...
    store.write(
        lambda s: s.add(
            ScoreAttempt(image_id=crash_id, model_set_id=ms, image_version=1, started=3)
        )
    )
    st = os.stat(crash)
    os.utime(crash, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _scan(store, crash.parent)  # ... whose file is version 2 now
    progs = list(score_library(store, predictor))
    assert progs[0].last_errors == [] and progs[-1].done == 1 and progs[-1].failed == 0
    assert _attempts(store) == {}


def test_a_clean_cancel_interrupts_nothing(library, predictor):
    """Images decoded ahead of a cancelled batch are not counted as interrupted."""
    store, paths, _crash = library
    stop = {"now": False}
    gen = score_library(store, predictor, batch_size=2, should_stop=lambda: stop["now"])
    for prog in gen:
        if prog.done:
            stop["now"] = True
    assert prog.cancelled and 0 < prog.done < len(paths)
    assert _attempts(store) == {}


_SCRIPT = """
import os, signal, sys
import engine.imageio
real = engine.imageio.read_source
def read_source(path, **kw):
    if os.path.basename(os.fspath(path)) == "crash.dcm":
        os.kill(os.getpid(), signal.SIGKILL)  # a decoder that takes the process down
    return real(path, **kw)
engine.imageio.read_source = read_source
from cxrlt_desktop.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_decoder_that_kills_the_process_costs_three_starts(
    store_url, tmp_path, write_study, csra_ckpt
):
    from cxrlt_desktop.store import open_store

    paths = write_study(tmp_path / "lib" / "a", 3, patient_id="A")
    crash = paths[1].rename(paths[1].with_name("crash.dcm"))
    url = store_url
    store = open_store(url)
    _scan(store, tmp_path / "lib")
    env = dict(
        os.environ,
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "none.toml"),
        OMP_NUM_THREADS="1",
    )
    args = [sys.executable, "-c", _SCRIPT, "score-library", "--db", url]
    args += model_args(csra_ckpt, batch=2)
    codes = []
    for _ in range(INTERRUPT_LIMIT + 1):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        codes.append(done.returncode)
        if done.returncode == 0:
            break
    assert codes == [-signal.SIGKILL] * INTERRUPT_LIMIT + [0], done.stderr
    assert f"cxrlt score-library: {crash}: {REASON_3}" in done.stderr
    assert sorted(_predicted(store)) == sorted(str(p) for p in (paths[0], paths[2]))
    assert _attempts(store) == {}
    store.close()
