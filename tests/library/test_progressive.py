"""The progressive policy's store parts on SQLite and PostgreSQL: model-set pairs, paper jobs
ranked by the provisional rare score and claimed in that order, provisional images.

Real stores (``any_store``); jobs are claimed through the real queue.
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from cxrlt_desktop.library import progressive as prog
from cxrlt_desktop.library import queue as jobq
from cxrlt_desktop.store.models import (
    Image,
    ModelSet,
    Prediction,
    ScoringRun,
    array_to_probs,
    utcnow,
)
from cxrlt_desktop.store.tables_department import ScoreJob
from cxrlt_desktop.store.tables_progressive import ModelSetPair


def _model_set(store, mode: str) -> int:
    def work(s):
        ms = ModelSet(key=secrets.token_hex(32), description={"settings": {"mode": mode}})
        s.add(ms)
        s.flush()
        return ms.id

    return store.write(work)


def _images(store, n: int) -> list[int]:
    rows = [
        {
            "path": f"/nowhere/{i:05d}.dcm",
            "size": 1,
            "mtime": 0.0,
            "version": 1,
            "usable": True,
            "missing": False,
            "is_dicom": True,
            "warnings": [],
            "meta": {},
            "scanned_at": utcnow(),
        }
        for i in range(n)
    ]
    return sorted(
        store.write(lambda s: list(s.scalars(insert(Image).returning(Image.id), rows).all()))
    )


def _predict(store, image_id: int, ms: int, make_current: bool = True) -> int:
    def work(s):
        run_id = s.scalar(select(ScoringRun.id).where(ScoringRun.model_set_id == ms))
        if run_id is None:
            run = ScoringRun(model_set_id=ms)
            s.add(run)
            s.flush()
            run_id = run.id
        p = Prediction(
            image_id=image_id,
            run_id=run_id,
            model_set_id=ms,
            image_version=1,
            probs=array_to_probs(np.full(36, 0.5)),
        )
        s.add(p)
        s.flush()
        if make_current:
            s.execute(update(Image).where(Image.id == image_id).values(current_prediction_id=p.id))
        return p.id

    return store.write(work)


def test_policy_names_and_defaults():
    assert prog.default_policy("cpu") == "progressive"
    assert prog.default_policy("cuda") == "paper"
    assert prog.check_policy("fast") == "fast"
    with pytest.raises(ValueError, match="policy must be one of progressive, paper, fast"):
        prog.check_policy("quick")


def test_paper_jobs_claimed_in_decreasing_provisional_score(any_store):
    store = any_store
    fast, paper = _model_set(store, "fast"), _model_set(store, "paper")
    store.write(lambda s: prog.pair_model_sets(s, fast, paper))
    store.write(lambda s: prog.pair_model_sets(s, fast, paper))  # idempotent
    ids = _images(store, 6)
    assert jobq.enqueue(store, fast, kind=prog.FAST_KIND, priority=prog.FAST_PRIORITY) == 6
    assert jobq.enqueue(store, paper, kind=prog.PAPER_KIND, priority=prog.UNRANKED_PRIORITY) == 6
    # the fast pass has scored five of the six; one score is not finite (unranked)
    scores = {ids[0]: 0.3, ids[1]: 2.5, ids[2]: 0.9, ids[3]: float("nan"), ids[4]: 1.7}
    changed = store.write(
        lambda s: prog.rank_paper_jobs(s, paper, [(i, 1, v) for i, v in scores.items()])
    )
    assert changed == 5
    # a job of the other kind or set is never touched
    with store.session() as s, s.begin():
        fast_prios = set(
            s.scalars(select(ScoreJob.priority).where(ScoreJob.model_set_id == fast)).all()
        )
    assert fast_prios == {prog.FAST_PRIORITY}
    claimed = [jobq.claim(store, "w", 1, model_set_id=paper)[0] for _ in range(6)]
    assert [j.image_id for j in claimed] == [ids[1], ids[4], ids[2], ids[0], ids[3], ids[5]]
    assert {j.kind for j in claimed} == {"paper"}
    # a claimed job keeps its priority when ranked again (its worker has it)
    assert store.write(lambda s: prog.rank_paper_jobs(s, paper, [(ids[1], 1, 0.0)])) == 0


def test_provisional_images_are_those_showing_a_paired_fast_set(any_store):
    store = any_store
    fast, paper = _model_set(store, "fast"), _model_set(store, "paper")
    alone = _model_set(store, "fast")  # the "fast" policy: final, not provisional
    store.write(lambda s: prog.pair_model_sets(s, fast, paper))
    a, b, c, d = _images(store, 4)
    pa = _predict(store, a, fast)
    _predict(store, b, fast)
    pb = _predict(store, b, paper)  # the paper result replaced the fast one
    pc = _predict(store, c, alone)
    with store.session() as s, s.begin():
        assert prog.is_provisional_prediction(s, pa)
        assert not prog.is_provisional_prediction(s, pb)
        assert not prog.is_provisional_prediction(s, pc)
        assert not prog.is_provisional_prediction(s, None)
        assert prog.provisional_images(s) == {a}
        assert prog.provisional_images(s, [b, c, d]) == set()
        assert prog.provisional_images(s, []) == set()
        assert prog.replaceable_sets(s, paper) == {fast}
        assert prog.replaceable_sets(s, fast) == set()
        assert s.scalar(select(ModelSetPair.created_at)) is not None


def test_paper_probabilities_take_the_fast_pass_clip_columns():
    paper = np.concatenate([np.full(30, 0.25), np.full(6, np.nan)])
    fast = np.concatenate([np.full(30, 0.75), np.arange(6) / 10])
    out = prog.with_clip_columns(paper, fast)
    np.testing.assert_array_equal(out[:30], 0.25)
    np.testing.assert_array_equal(out[30:], np.arange(6) / 10)
    assert np.isnan(paper[30:]).all()  # the input is not changed


def test_worklist_json_marks_studies_showing_a_provisional_score(
    store_url, tmp_path, write_study, capsys, monkeypatch
):
    import json

    from cxrlt_desktop.cli import main
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.library.worklist import query_worklist
    from cxrlt_desktop.store import open_store

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    write_study(tmp_path / "in" / "a", 2, patient_id="PAT-A", study_uid="1.2.3.1")
    write_study(tmp_path / "in" / "b", 1, patient_id="PAT-B", study_uid="1.2.3.2")
    store = open_store(store_url)
    try:
        for _ in scan(store, [tmp_path / "in"]):
            pass
        fast, paper = _model_set(store, "fast"), _model_set(store, "paper")
        store.write(lambda s: prog.pair_model_sets(s, fast, paper))
        by_study = {row.study_uid: row for row in query_worklist(store)}
        with store.session() as s, s.begin():
            from cxrlt_desktop.store.models import Series, Study

            images = s.execute(
                select(Image.id, Study.study_uid)
                .join(Series, Series.id == Image.series_id)
                .join(Study, Study.id == Series.study_id)
                .order_by(Image.id)
            ).all()
        a_imgs = [i for i, uid in images if uid == "1.2.3.1"]
        (b_img,) = [i for i, uid in images if uid == "1.2.3.2"]
        for i in a_imgs:
            _predict(store, i, fast)
        _predict(store, b_img, fast)
        _predict(store, b_img, paper)  # study b: the paper result is current
        _predict(store, a_imgs[0], paper)  # study a: one image still provisional
    finally:
        store.close()

    assert main(["worklist", "--db", store_url, "--json"]) == 0
    rows = {r["study_uid"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["1.2.3.1"]["provisional"] is True
    assert rows["1.2.3.2"]["provisional"] is False
    assert by_study["1.2.3.1"].provisional is False  # before any score
