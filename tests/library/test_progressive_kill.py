"""kill -9 during the fast pass and during the paper pass of ``cxrlt score-library --policy
progressive``, on SQLite and PostgreSQL: between starts no scored image loses its score, the
provisional marks are exactly the images without a paper result, and a restart completes the
paper result for every image, each with one prediction per model set and none provisional.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from library_helpers import cli_cmd, model_args
from sqlalchemy import func, select

from cxrlt_desktop.library import progressive as prog
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import Image, Prediction
from cxrlt_desktop.store.tables_progressive import ModelSetPair

WAIT_S = 600


def _args(db, csra_ckpt):
    args = model_args(csra_ckpt, batch=1)
    args[args.index("--mode") + 1] = "paper"
    return cli_cmd("score-library", "--db", db, *args, "--policy", "progressive")


def _env(tmp_path):
    env = dict(os.environ)
    env.update(
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "none.toml"),
        OMP_NUM_THREADS="1",
    )
    return env


def _start_and_kill(args, env, marker: str, nth: int) -> bool:
    """Start the scorer and kill -9 it after its ``nth`` progress line containing ``marker``;
    False if it ended first."""
    p = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    seen = 0
    try:
        for line in p.stderr:
            if marker in line and "/" in line:
                seen += 1
                if seen >= nth:
                    p.send_signal(signal.SIGKILL)
                    p.wait(timeout=WAIT_S)
                    return True
        p.wait(timeout=WAIT_S)
        return False
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _state(url):
    st = open_store(url)
    try:
        with st.session() as s, s.begin():
            n = s.scalar(select(func.count(Image.id)))
            unscored = s.scalar(
                select(func.count(Image.id)).where(Image.current_prediction_id.is_(None))
            )
            pair = s.execute(
                select(ModelSetPair.fast_model_set_id, ModelSetPair.paper_model_set_id)
            ).all()
            per_set = s.execute(
                select(Prediction.image_id, Prediction.model_set_id, func.count()).group_by(
                    Prediction.image_id, Prediction.model_set_id
                )
            ).all()
            provisional = prog.provisional_images(s)
            paper_done = set()
            if pair:
                paper_done = set(
                    s.scalars(
                        select(Prediction.image_id).where(Prediction.model_set_id == pair[0][1])
                    ).all()
                )
            fast_done = set()
            if pair:
                fast_done = set(
                    s.scalars(
                        select(Prediction.image_id).where(Prediction.model_set_id == pair[0][0])
                    ).all()
                )
            current_sets = dict(
                s.execute(
                    select(Image.id, Prediction.model_set_id).join(
                        Prediction, Prediction.id == Image.current_prediction_id
                    )
                ).all()
            )
        return dict(
            n=n,
            unscored=unscored,
            pair=pair,
            max_per_set=max((c for _, _, c in per_set), default=0),
            provisional=provisional,
            paper_done=paper_done,
            fast_done=fast_done,
            current_sets=current_sets,
        )
    finally:
        st.close()


@pytest.mark.parametrize("where", ["fast", "paper"])
def test_kill_9_during_a_pass_then_restart(store_url, tmp_path, write_study, csra_ckpt, where):
    for k in range(3):
        write_study(tmp_path / "in" / f"s{k}", 2, patient_id=f"P{k}")
    st = open_store(store_url)
    for _ in scan(st, [tmp_path / "in"]):
        pass
    st.close()
    env = _env(tmp_path)
    args = _args(store_url, csra_ckpt)

    killed = _start_and_kill(args, env, f"({where} pass)", 3)
    assert killed, "the scorer ended before it could be killed"
    s = _state(store_url)
    assert len(s["pair"]) == 1 and s["max_per_set"] == 1
    # every image the fast pass wrote shows a score; provisional = fast result without paper
    assert set(s["current_sets"]) == s["fast_done"] | s["paper_done"]
    assert s["provisional"] == s["fast_done"] - s["paper_done"]
    if where == "paper":
        assert s["unscored"] == 0 and len(s["fast_done"]) == s["n"]
        assert 0 < len(s["paper_done"]) < s["n"]

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    s = _state(store_url)
    assert s["unscored"] == 0 and s["max_per_set"] == 1 and s["provisional"] == set()
    assert len(s["paper_done"]) == s["n"] and len(s["fast_done"]) == s["n"]
    assert set(s["current_sets"].values()) == {s["pair"][0][1]}


def test_worker_command_policies(store_url, tmp_path, write_study, csra_ckpt, capsys, monkeypatch):
    """cxrlt worker --policy progressive scores both passes and ends with no provisional score;
    with --follow it is refused in one line."""
    from cxrlt_desktop.cli import main

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    write_study(tmp_path / "in" / "a", 3, patient_id="PA")
    st = open_store(store_url)
    for _ in scan(st, [tmp_path / "in"]):
        pass
    st.close()
    args = model_args(csra_ckpt, batch=2)
    args[args.index("--mode") + 1] = "paper"
    base = ["worker", "--db", store_url, *args, "--no-progress", "--name", "w1"]
    assert main([*base, "--policy", "progressive", "--follow"]) == 2
    assert "--policy progressive runs until the queue is empty" in capsys.readouterr().err
    assert main([*base, "--policy", "progressive"]) == 0
    err = capsys.readouterr().err
    assert "(fast pass)" in err and "(paper pass)" in err
    s = _state(store_url)
    assert s["n"] == 3 and s["provisional"] == set() and s["max_per_set"] == 1
    assert len(s["fast_done"]) == 3 and len(s["paper_done"]) == 3
    assert set(s["current_sets"].values()) == {s["pair"][0][1]}
