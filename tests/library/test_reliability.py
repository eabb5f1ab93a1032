"""Reliability: kill -9 during scoring, scan and score in two processes, bad inputs mixed in.

The subprocesses are the real command (``python -m cxrlt_desktop ...``) on a real SQLite file.
The tests wait on the progress lines the command prints after each committed batch (a reader
thread feeds a queue; every wait is bounded), never on a fixed sleep.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import threading

import pytest
from library_helpers import cli_cmd, model_args, write_bad_inputs
from sqlalchemy import func, select

from cxrlt_desktop.library.reviews import image_verdicts, set_verdict
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import score_library
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import Image, ModelSet, Prediction, ScoreFailure

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
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self):
        line = self.lines.get(timeout=WAIT_S)
        if line is not None:
            self.log.append(line)
        return line

    def wait(self):
        while self.next_line() is not None:
            pass
        return self.p.wait(timeout=WAIT_S)


def _committed(line: str) -> int | None:
    """Images processed per a 'score-library: N/M ...' line (printed after the commit)."""
    if not line.startswith("score-library: ") or "/" not in line:
        return None
    return int(line.split()[1].split("/")[0])


def _scored_ok(url):
    st = open_store(url)
    try:
        with st.session() as s, s.begin():
            return s.scalar(select(func.count(Prediction.id)))
    finally:
        st.close()


@pytest.mark.slow
def test_kill_dash_nine_loses_nothing(tmp_path, write_study, csra_ckpt):
    rng = random.Random(1234)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
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
    while kills < 6:
        proc = Proc(args, _env(tmp_path))
        target = rng.randint(1, 4)  # committed batches to wait for before the kill
        seen = 0
        reported = 0
        while seen < target:
            line = proc.next_line()
            if line is None:
                break
            n = _committed(line)
            if n is not None and n > reported:
                reported, seen = n, seen + 1
                review_one()  # while the scorer is writing
        if proc.p.poll() is not None:
            proc.wait()
            break  # it finished before we killed it
        proc.p.send_signal(signal.SIGKILL)
        proc.p.wait(timeout=WAIT_S)
        kills += 1
        # Everything it reported as committed is in the database.
        assert _scored_ok(url) >= reported
        review_one()  # between kills
    assert kills >= 5, "the run finished before 5 kills: make the library larger"

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
    for iid, verdict in reviews.items():
        assert image_verdicts(store, iid)["Pneumothorax"].verdict == verdict
    with store.raw_connection() as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    store.close()


@pytest.mark.slow
def test_scan_and_score_processes_at_once(tmp_path, write_study, csra_ckpt):
    url = f"sqlite:///{tmp_path / 'two.db'}"
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
    with store.raw_connection() as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_bad_inputs_recorded_rest_scored(store, tmp_path, write_study, predictor):
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
