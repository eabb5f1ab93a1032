"""Reliability: kill -9 during scoring, scan and score in two processes, bad inputs mixed in.

The subprocesses are the real command (``python -m cxrlt_desktop ...``) on a real SQLite file
and on a real PostgreSQL database (``store_url``); the integrity check is ``cxrlt db check``'s
(SQLite: PRAGMA integrity_check and foreign_key_check; PostgreSQL: foreign keys, orphans and
sequences).
The tests wait on the progress lines the command prints after each committed batch (a reader
thread feeds a queue; every wait is bounded); the kill test also kills at random moments, read
off the line queue with a deadline, and checks nothing that depends on when they fall.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import threading
import time

import pytest
from library_helpers import cli_cmd, model_args, write_bad_inputs
from sqlalchemy import func, select

from cxrlt_desktop.library.reviews import image_verdicts, set_verdict
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import retry_failed, score_library
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.check import check_store
from cxrlt_desktop.store.models import Image, ModelSet, Prediction, ScoreAttempt, ScoreFailure

WAIT_S = 300  # upper bound for one wait; a healthy run takes seconds


def _env(tmp_path):
    env = dict(os.environ)
    env.update(
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "none.toml"),
        OMP_NUM_THREADS="1",
    )
    return env


class Proc:
    """A subprocess whose stderr lines arrive on a queue."""

    def __init__(self, args, env):
        self.p = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue = queue.Queue()
        self.log: list[str] = []
        self.eof = False  # the end of stderr (None) was taken off the queue
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self):
        line = self.lines.get(timeout=WAIT_S)
        if line is None:
            self.eof = True
        else:
            self.log.append(line)
        return line

    def wait(self):
        while not self.eof:
            self.next_line()
        return self.p.wait(timeout=WAIT_S)


def _committed(line: str) -> int | None:
    """Images processed per a 'score-library: N/M ...' line (printed after the commit)."""
    if not line.startswith("score-library: ") or "/" not in line:
        return None
    return int(line.split()[1].split("/")[0])


def _scored_in_line(line: str) -> int | None:
    """This start's scored count in a 'score-library: N/M (S scored, F failed) ...' line."""
    m = re.search(r"\((\d+) scored, \d+ failed\)", line)
    return int(m.group(1)) if m else None


def _scored_ok(url):
    """Images with a prediction, from the database."""
    st = open_store(url)
    try:
        with st.session() as s, s.begin():
            return s.scalar(select(func.count(func.distinct(Prediction.image_id))))
    finally:
        st.close()


class Start:
    """One start of the scorer, followed until it is killed: the lines read so far, the scored
    count its last progress line reported (committed before it was printed) and when its
    lines came, by the clock of this process."""

    def __init__(self, args, env):
        self.t0 = time.monotonic()
        self.proc = Proc(args, env)
        self.reported = 0
        self.line_times: list[float] = []  # seconds from the start to each progress line
        self.ended = False

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _take(self, line) -> int | None:
        if line is None:
            self.ended = True
            return None
        n = _scored_in_line(line)
        if n is not None:
            self.line_times.append(self.elapsed())
            self.reported = max(self.reported, n)
        return n

    def read_until(self, at: float) -> None:
        """Read lines until ``at`` seconds after the start (or the end of the process): the
        random moment of a kill."""
        while not self.ended and (left := at - self.elapsed()) > 0:
            try:
                line = self.proc.lines.get(timeout=left)
            except queue.Empty:
                return
            if line is None:
                self.proc.eof = True
            else:
                self.proc.log.append(line)
            self._take(line)

    def read_batches(self, k: int, on_batch) -> None:
        """Read until ``k`` more batches were reported committed (``on_batch`` after each)."""
        seen = 0
        while seen < k and not self.ended:
            before = self.reported
            self._take(self.proc.next_line())
            if self.reported > before:
                seen += 1
                on_batch()


@pytest.mark.slow
def test_kill_dash_nine_loses_nothing(store_url, tmp_path, write_study, csra_ckpt):
    """kill -9 at random moments: while Python and the model load, right after a committed
    batch, and at a random delay after one (during a decode, the compute, an attempt's commit
    or a batch's commit), while verdicts are written. Before each start the scored images are
    counted in the database; after each kill everything the start reported committed is
    there on top of them, and nothing is lost."""
    rng = random.Random(1234)
    url = store_url
    for k in range(8):
        write_study(tmp_path / "in" / f"s{k}", 5, patient_id=f"P{k}")
    store = open_store(url)
    for _ in scan(store, [tmp_path / "in"]):
        pass
    with store.session() as s, s.begin():
        image_ids = s.scalars(select(Image.id).where(Image.usable.is_(True))).all()
    assert len(image_ids) == 40
    reviews: dict[int, str] = {}

    def review_one():
        iid = rng.choice(image_ids)
        verdict = rng.choice(["present", "absent", "uncertain"])
        set_verdict(store, iid, "Pneumothorax", verdict, reviewer="dr")
        reviews[iid] = verdict

    review_one()  # before the first run
    args = cli_cmd("score-library", "--db", url, *model_args(csra_ckpt, batch=1))
    kills = 0
    modes: list[str] = []
    first_line = batch_gap = None  # measured on the first start
    schedule = ["loading", "mid", "batches", "mid", "loading"]  # after the first: each mode
    rng.shuffle(schedule)
    scored = _scored_ok(url)
    while kills < 6:
        before = _scored_ok(url)
        assert before >= scored  # nothing committed ever goes away
        start = Start(args, _env(tmp_path))
        mode = "batches" if first_line is None or not schedule else schedule.pop()
        if mode == "loading":  # before the first progress line: imports, model, queue
            start.read_until(rng.uniform(0.2, 1.0) * first_line)
        else:
            start.read_batches(rng.randint(1, 3), review_one)
            if mode == "mid":
                start.read_until(start.elapsed() + rng.uniform(0.0, 1.5) * batch_gap)
        if first_line is None and len(start.line_times) >= 3:
            first_line = start.line_times[0]
            batch_gap = (start.line_times[-1] - start.line_times[1]) / (len(start.line_times) - 2)
        if start.proc.p.poll() is not None:  # it ended before we killed it: finished, or
            assert start.proc.wait() == 0, "".join(start.proc.log)  # crashed (a bug: say so)
            break
        start.proc.p.send_signal(signal.SIGKILL)
        start.proc.p.wait(timeout=WAIT_S)
        kills += 1
        modes.append(mode)
        scored = _scored_ok(url)
        # Everything this start reported as committed is in the database, on top of what was.
        assert scored >= before + start.reported, (mode, before, start.reported, scored)
        review_one()  # between kills
    assert kills >= 5, (
        f"the run finished before 5 kills (after {modes}, {scored} of 40 scored at the last "
        "kill): make the library larger"
    )
    assert first_line is not None

    # A start killed on an image it scores alone counts an interruption against that image;
    # three give it up (the scorer's rule for a file that keeps taking the process down). Such
    # an image has the reason, and retrying it is the user's way back.
    with store.session() as s, s.begin():
        reasons = s.scalars(select(ScoreFailure.reason)).all()
    assert all(r.startswith("scoring was interrupted") for r in reasons), reasons
    assert len(reasons) <= kills // 2
    retry_failed(store)

    final = Proc(args, _env(tmp_path))
    assert final.wait() == 0, "".join(final.log)
    assert any("finished" in x for x in final.log)

    with store.session() as s, s.begin():
        ms = s.scalars(select(ModelSet.id)).all()
        assert len(ms) == 1
        per_image = dict(
            s.execute(
                select(Prediction.image_id, func.count(Prediction.id))
                .where(Prediction.model_set_id == ms[0])
                .group_by(Prediction.image_id)
            ).all()
        )
        assert sorted(per_image) == sorted(image_ids) and set(per_image.values()) == {1}
        assert s.scalar(select(func.count(ScoreFailure.image_id))) == 0
        assert s.scalar(select(func.count(ScoreAttempt.image_id))) == 0
        current = s.execute(select(Image.id, Image.current_prediction_id)).all()
        assert all(pid is not None for _iid, pid in current)
    for iid, verdict in reviews.items():
        assert image_verdicts(store, iid)["Pneumothorax"].verdict == verdict
    assert check_store(store).problems == []
    store.close()


@pytest.mark.slow
def test_scan_and_score_processes_at_once(store_url, tmp_path, write_study, csra_ckpt):
    url = store_url
    for k in range(4):
        write_study(tmp_path / "first" / f"s{k}", 5, patient_id=f"A{k}")
    for k in range(30):
        write_study(tmp_path / "second" / f"s{k}", 4, patient_id=f"B{k}")
    store = open_store(url)
    for _ in scan(store, [tmp_path / "first"]):
        pass
    env = _env(tmp_path)
    scorer = Proc(cli_cmd("score-library", "--db", url, *model_args(csra_ckpt, batch=1)), env)
    # Start the scan once the scorer has committed its first batch, so both write at once.
    while True:
        line = scorer.next_line()
        assert line is not None, "".join(scorer.log)
        if (_committed(line) or 0) > 0:
            break
    scanner = Proc(
        cli_cmd("scan", str(tmp_path / "second"), "--db", url, "--batch-files", "10"), env
    )
    assert scanner.wait() == 0, "".join(scanner.log)
    assert scorer.wait() == 0, "".join(scorer.log)
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count(Image.id))) == 20 + 120
    # The scorer's queue was fixed at its start or extended at its end; a second run scores the rest.
    again = Proc(cli_cmd("score-library", "--db", url, *model_args(csra_ckpt, batch=8)), env)
    assert again.wait() == 0, "".join(again.log)
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count(Prediction.id))) == 140
        assert s.scalar(select(func.count(func.distinct(Prediction.image_id)))) == 140
    assert check_store(store).problems == []
    store.close()


def test_bad_inputs_recorded_rest_scored(any_store, tmp_path, write_study, predictor):
    store = any_store
    write_study(tmp_path / "mix" / "good1", 3, patient_id="G1")
    write_study(tmp_path / "mix" / "good2", 2, patient_id="G2")
    expected = write_bad_inputs(tmp_path / "mix" / "bad")
    for _ in scan(store, [tmp_path / "mix"]):
        pass
    progs = list(score_library(store, predictor))
    assert progs[-1].done == 5 and progs[-1].failed == 1
    with store.session() as s, s.begin():
        rows = {
            os.path.basename(i.path): i
            for i in s.scalars(
                select(Image).where(Image.path.contains(os.sep + "bad" + os.sep))
            ).all()
        }
        for name, start in expected.items():
            if start is None:  # header fine, decoding fails: a scoring failure with its reason
                f = s.get(ScoreFailure, (rows[name].id, progs[-1].model_set_id))
                assert f.reason.startswith("truncated pixel data")
            else:
                assert not rows[name].usable and rows[name].reason.startswith(start)
        good = s.scalar(
            select(func.count(Image.id)).where(Image.current_prediction_id.is_not(None))
        )
        assert good == 5
