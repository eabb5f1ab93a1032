"""The scoring service: stored results equal the engine's, resume, failures, model sets, triage."""

from __future__ import annotations

import os

import numpy as np
import pytest
from library_helpers import write_bad_inputs
from sqlalchemy import func, select

from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import score_library
from cxrlt_desktop.library.worklist import query_worklist
from cxrlt_desktop.store.models import (
    FindingHit,
    Image,
    Prediction,
    ScoreFailure,
    ScoringRun,
    Series,
    Study,
)
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS, RARE_CLASSES


def _scan(store, *folders):
    for _ in scan(store, folders):
        pass


def _score(store, predictor, **kw):
    return list(score_library(store, predictor, **kw))


_PREDICTORS: dict = {}


def _tiny_predictor(csra_ckpt, **kw):
    """A fast-mode CPU predictor over the random atto checkpoint at 64 px (``kw`` override),
    built once per settings and shared, like the session's ``predictor``: each test runs twice
    (SQLite, PostgreSQL) and loading models is the slow part."""
    from engine.predictor import EngineConfig, Predictor

    key = (str(csra_ckpt), tuple(sorted(kw.items())))
    if key in _PREDICTORS:
        return _PREDICTORS[key]

    base = dict(
        task1_checkpoints=[csra_ckpt],
        task1_arch="convnextv2_atto",
        mode="fast",
        image_size=64,
        device="cpu",
        batch_size=4,
    )
    _PREDICTORS[key] = Predictor(EngineConfig(**{**base, **kw}))
    return _PREDICTORS[key]


def _hand_rare(p):
    """Independent loop: max over rare classes of p / t, skipping NaN."""
    best = None
    for k, c in enumerate(ALL_CLASSES):
        if c in RARE_CLASSES and not np.isnan(p[k]):
            r = p[k] / DEFAULT_THRESHOLDS[c]
            best = r if best is None or r > best else best
    return best


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL (the model fixtures are per session)."""
    return any_store


@pytest.fixture
def library(store, tmp_path, write_study):
    write_study(tmp_path / "lib" / "s1", 3, patient_id="A", study_date="20240101")
    write_study(tmp_path / "lib" / "s2", 2, patient_id="B", study_date="20240301")
    write_study(tmp_path / "lib" / "s3", 2, patient_id="C", study_date="20240201")
    _scan(store, tmp_path / "lib")
    return store


def test_stored_results_equal_engine(library, predictor):
    from engine.imageio import read_source

    progs = _score(library, predictor)
    assert progs[0].total == 7 and progs[0].done == 0
    assert progs[-1].finished and progs[-1].done == 7 and progs[-1].failed == 0
    with library.session() as s, s.begin():
        rows = s.execute(
            select(Image.path, Prediction).join(
                Prediction, Prediction.id == Image.current_prediction_id
            )
        ).all()
        assert len(rows) == 7
        for path, pred in rows:
            ref = predictor.predict_arrays([read_source(path)])
            # batched vs one-image compute differ by float32 rounding (engine bound: 1e-5)
            np.testing.assert_allclose(pred.probabilities(), ref.probs[0], rtol=0, atol=1e-5)
            att = pred.attention_maps()
            assert att.dtype == np.float16 and att.shape == ref.attention[0].shape
            np.testing.assert_allclose(
                att.astype(np.float32), ref.attention[0].astype(np.float32), atol=2e-3
            )
            assert pred.rare_score == pytest.approx(_hand_rare(pred.probabilities()), rel=1e-12)
            hits = s.scalars(
                select(FindingHit.finding).where(FindingHit.prediction_id == pred.id)
            ).all()
            p = pred.probabilities()
            want = [c for k, c in enumerate(ALL_CLASSES) if k > 0 and p[k] >= DEFAULT_THRESHOLDS[c]]
            assert sorted(hits) == sorted(want) and pred.n_above == len(want)
        # Study score = max over its images; worklist = studies by that score, descending.
        for st in s.scalars(select(Study)).all():
            scores = s.scalars(
                select(Prediction.rare_score)
                .join(Image, Image.current_prediction_id == Prediction.id)
                .join(Series, Series.id == Image.series_id)
                .where(Series.study_id == st.id)
            ).all()
            assert st.rare_score == pytest.approx(max(scores)) and st.n_scored == st.n_images
            n_above = s.scalar(
                select(func.count(func.distinct(FindingHit.finding))).where(
                    FindingHit.study_id == st.id
                )
            )
            assert st.n_above == n_above
        run = s.scalars(select(ScoringRun)).one()
        assert run.finished_at is not None and run.n_done == 7 and run.mode == "fast"
        assert len(run.models) == 1 and run.models[0].model_version.role == "task1-csra"
    wl = query_worklist(library)
    assert [r.rare_score for r in wl] == sorted((r.rare_score for r in wl), reverse=True)
    assert len(wl) == 3


def test_resume_after_cancel(library, predictor):
    stop = {"now": False}
    first = []
    for prog in score_library(library, predictor, batch_size=2, should_stop=lambda: stop["now"]):
        first.append(prog)
        stop["now"] = prog.done > 0  # cancel as a GUI would, after the first batch
    assert first[-1].cancelled and first[-1].done == 2
    with library.session() as s, s.begin():
        assert s.scalar(select(func.count(Prediction.id))) == 2
        run_id = s.scalar(select(ScoringRun.id))
        assert s.get(ScoringRun, run_id).finished_at is None
    rest = _score(library, predictor, batch_size=2)
    assert rest[0].total == 5 and rest[0].already_scored == 2 and rest[-1].finished
    assert rest[-1].run_id == run_id  # the unfinished run was resumed, not a new one
    with library.session() as s, s.begin():
        per_image = s.execute(
            select(Prediction.image_id, func.count()).group_by(Prediction.image_id)
        ).all()
        assert len(per_image) == 7 and {n for _, n in per_image} == {1}
        assert s.get(ScoringRun, run_id).attempts == 2
    assert _score(library, predictor)[0].total == 0  # nothing left


def test_failures_retried_once_then_left(store, tmp_path, write_study, predictor):
    write_study(tmp_path / "f" / "good", 2)
    write_bad_inputs(tmp_path / "f" / "bad")
    _scan(store, tmp_path / "f")
    one = _score(store, predictor)
    assert one[-1].done == 2 and one[-1].failed == 1
    errors = [e for p in one for e in p.last_errors]
    assert len(errors) == 1 and errors[0][0].endswith("trunc_j2k.dcm")
    assert errors[0][1].startswith("truncated pixel data")
    with store.session() as s, s.begin():
        f = s.scalars(select(ScoreFailure)).one()
        assert f.attempts == 1 and f.reason.startswith("truncated pixel data")
        assert s.scalar(select(func.sum(Study.n_failed))) == 1
    from cxrlt_desktop.library.worklist import problem_files, study_images

    with store.session() as s, s.begin():
        bad_study = s.scalar(
            select(Series.study_id)
            .join(Image, Image.series_id == Series.id)
            .where(Image.path.endswith("trunc_j2k.dcm"))
        )
    (row,) = study_images(store, bad_study)
    assert row.state == "failed" and row.failure.startswith("truncated pixel data")
    names = sorted(os.path.basename(p) for p, _ in problem_files(store))  # scan-time rejects
    assert names == ["ct.dcm", "report.dcm", "text.dcm", "trunc.dcm", "zero.dcm"]
    two = _score(store, predictor)  # next start: one retry
    assert two[0].total == 1 and two[-1].failed == 1
    three = _score(store, predictor)  # given up until the file changes
    assert three[0].total == 0
    with store.session() as s, s.begin():
        assert s.scalars(select(ScoreFailure)).one().attempts == 2
    bad = tmp_path / "f" / "bad" / "trunc_j2k.dcm"
    st = os.stat(bad)
    os.utime(bad, (st.st_atime, st.st_mtime + 5))
    _scan(store, tmp_path / "f")
    assert _score(store, predictor)[0].total == 1


def test_new_model_set_rescores_and_keeps_old(library, predictor, csra_ckpt):

    _score(library, predictor)
    other = _tiny_predictor(csra_ckpt, normal_alpha=1.0)
    progs = _score(library, other)
    assert progs[0].total == 7 and progs[-1].finished
    with library.session() as s, s.begin():
        assert s.scalar(select(func.count(Prediction.id))) == 14
        sets = s.execute(
            select(Prediction.model_set_id)
            .join(Image, Image.current_prediction_id == Prediction.id)
            .distinct()
        ).all()
        assert sets == [(progs[-1].model_set_id,)]
    again = _score(library, predictor)
    assert again[0].total == 0 and again[-1].finished  # the first set stays complete
    # ... and a start with nothing to score records no run (the GUI starts one after each scan)
    assert again[-1].run_id is None
    with library.session() as s, s.begin():
        assert s.scalar(select(func.count(ScoringRun.id))) == 2
        assert (
            s.scalar(select(func.count(ScoringRun.id)).where(ScoringRun.finished_at.is_(None))) == 0
        )


def test_another_cpu_backend_is_the_same_model_set(library, predictor, csra_ckpt):
    """Switching runtime (an upgrade to OpenVINO, a fall-back to PyTorch) does not rescore."""

    first = _score(library, predictor)[-1]
    eager = _tiny_predictor(csra_ckpt, cpu_backend="torch")
    assert eager.settings["backend"] == "torch" != predictor.settings["backend"]
    again = _score(library, eager)
    assert again[0].total == 0 and again[0].model_set_id == first.model_set_id
    assert again[0].already_scored == first.done


def test_newest_complete_run_is_current(library, predictor, csra_ckpt):
    """Mid-run, images keep the complete model set's prediction; at completion they switch."""

    first = _score(library, predictor)[-1].model_set_id

    def showing():
        with library.session() as s, s.begin():
            rows = s.execute(
                select(Image.id, Prediction.model_set_id, Prediction.rare_score).join(
                    Prediction, Prediction.id == Image.current_prediction_id
                )
            ).all()
            studies = {st.id: st.rare_score for st in s.scalars(select(Study)).all()}
        return {i: m for i, m, _ in rows}, {i: r for i, _, r in rows}, studies

    sets_before, scores_before, studies_before = showing()
    assert set(sets_before.values()) == {first} and len(sets_before) == 7
    other = _tiny_predictor(csra_ckpt, normal_alpha=1.0, batch_size=2)
    stop = {"now": False}
    for prog in score_library(library, other, batch_size=2, should_stop=lambda: stop["now"]):
        stop["now"] = prog.done > 0
    assert prog.cancelled and prog.done == 2
    second = prog.model_set_id
    # Two images have a prediction of the second set, but the worklist still shows the first.
    assert showing() == (sets_before, scores_before, studies_before)
    last = _score(library, other, batch_size=2)[-1]
    assert last.finished and last.model_set_id == second
    sets_after, scores_after, studies_after = showing()
    assert set(sets_after.values()) == {second} and len(sets_after) == 7
    assert max(studies_after.values()) == pytest.approx(max(scores_after.values()))
    assert scores_after != scores_before  # alpha 1.0 and fast mode give other numbers
    # Completing a run of the first set again (nothing left to score) makes it current again.
    assert _score(library, predictor)[-1].finished
    assert showing() == (sets_before, scores_before, studies_before)


def test_finding_and_status_filters(library, predictor, monkeypatch):
    from cxrlt_desktop.library.reviews import set_verdict

    _score(library, predictor)
    with library.session() as s, s.begin():
        finding, n = s.execute(
            select(FindingHit.finding, func.count(func.distinct(FindingHit.study_id)))
            .group_by(FindingHit.finding)
            .order_by(func.count(func.distinct(FindingHit.study_id)))
        ).first()
        want = set(
            s.scalars(
                select(Study.study_uid)
                .join(FindingHit, FindingHit.study_id == Study.id)
                .where(FindingHit.finding == finding)
            ).all()
        )
        images = s.execute(
            select(Image.id, Series.study_id).join(Series, Series.id == Image.series_id)
        ).all()
    got = query_worklist(library, finding=finding)
    assert {r.study_uid for r in got} == want and len(got) == n
    # The index-walk plan used for frequent findings gives the same rows in the same order.
    import cxrlt_desktop.library.worklist as wl

    monkeypatch.setattr(wl, "DENSE_HITS", 1)
    assert [r.study_uid for r in query_worklist(library, finding=finding)] == [
        r.study_uid for r in got
    ]
    monkeypatch.undo()
    study_id = images[0][1]
    for iid, sid in images:
        if sid == study_id:
            set_verdict(library, iid, "Mass", "absent", reviewer="dr")
    reviewed = query_worklist(library, status="reviewed")
    assert [r.study_id for r in reviewed] == [study_id] and reviewed[0].status == "reviewed"
    assert study_id not in {r.study_id for r in query_worklist(library, status="unreviewed")}
    with pytest.raises(ValueError, match="unknown finding"):
        query_worklist(library, finding="unicorn")


@pytest.mark.parametrize("chunk", [500, 3])  # one transaction, or three short ones
def test_retriage_follows_new_thresholds(library, predictor, chunk, monkeypatch):
    import cxrlt_desktop.library.triage as triage
    from cxrlt_desktop.library.triage import retriage

    monkeypatch.setattr(triage, "RETRIAGE_CHUNK", chunk)
    _score(library, predictor)
    with library.session() as s, s.begin():
        before = {p.id: p.probabilities() for p in s.scalars(select(Prediction)).all()}
    # Pneumothorax at 0.01: every image with p >= 0.01 now has it above threshold.
    assert retriage(library, {"Pneumothorax": 0.01}) == 7
    k = ALL_CLASSES.index("Pneumothorax")
    with library.session() as s, s.begin():
        for pred in s.scalars(select(Prediction)).all():
            p = before[pred.id]
            assert np.array_equal(pred.probabilities(), p, equal_nan=True)  # never change
            ratios = [
                p[i] / (0.01 if c == "Pneumothorax" else DEFAULT_THRESHOLDS[c])
                for i, c in enumerate(ALL_CLASSES)
                if c in RARE_CLASSES
            ]
            assert pred.rare_score == pytest.approx(max(ratios))
            has_hit = s.scalar(
                select(func.count()).where(
                    FindingHit.prediction_id == pred.id, FindingHit.finding == "Pneumothorax"
                )
            )
            assert has_hit == int(p[k] >= 0.01)
        # The study summaries follow: the top study's score is the top prediction's.
        assert s.scalar(select(func.max(Study.rare_score))) == pytest.approx(
            s.scalar(select(func.max(Prediction.rare_score)))
        )


def test_completion_switches_images_in_short_transactions(
    library, predictor, csra_ckpt, monkeypatch
):
    """A new model set switches every image at completion: in chunks, not one long lock."""
    import cxrlt_desktop.library.scoring as scoring

    _score(library, predictor)
    monkeypatch.setattr(scoring, "SWITCH_CHUNK", 2)
    switched: list[int] = []
    real = scoring._make_current

    def counting(s, *args):
        n = real(s, *args)
        switched.append(n)
        return n

    monkeypatch.setattr(scoring, "_make_current", counting)
    other = _tiny_predictor(csra_ckpt, normal_alpha=1.0)
    last = _score(library, other)[-1]
    assert last.finished
    # 7 images: chunks of 2, 2, 2, 1, then the completing transaction finds nothing left
    assert switched == [2, 2, 2, 1, 0]
    with library.session() as s, s.begin():
        shown = s.execute(
            select(Prediction.model_set_id).join(
                Image, Image.current_prediction_id == Prediction.id
            )
        ).all()
    assert [m for (m,) in shown] == [last.model_set_id] * 7


def test_switching_back_to_a_scored_model_set_is_chunked_too(
    library, predictor, csra_ckpt, monkeypatch
):
    import cxrlt_desktop.library.scoring as scoring

    first = _score(library, predictor)[-1].model_set_id
    _score(library, _tiny_predictor(csra_ckpt, normal_alpha=1.0))
    monkeypatch.setattr(scoring, "SWITCH_CHUNK", 3)
    switched: list[int] = []
    real = scoring._make_current

    def counting(s, *args):
        switched.append(real(s, *args))
        return switched[-1]

    monkeypatch.setattr(scoring, "_make_current", counting)
    back = _score(library, predictor)  # nothing to score: only the switch back
    assert back[-1].finished and back[-1].run_id is None and back[0].total == 0
    assert switched == [3, 3, 1, 0]
    with library.session() as s, s.begin():
        shown = s.execute(
            select(Prediction.model_set_id).join(
                Image, Image.current_prediction_id == Prediction.id
            )
        ).all()
    assert [m for (m,) in shown] == [first] * 7


def test_retriage_cut_short_stays_pending_until_finished(library, predictor, monkeypatch):
    import cxrlt_desktop.library.triage as triage

    _score(library, predictor)
    assert not triage.retriage_pending(library)
    monkeypatch.setattr(triage, "RETRIAGE_CHUNK", 3)
    asked = []

    def after_one_chunk() -> bool:  # asked before each chunk: let the first one run
        asked.append(1)
        return len(asked) > 1

    assert triage.retriage(library, {"Mass": 0.01}, should_stop=after_one_chunk) == 3
    assert triage.retriage_pending(library)  # stopped after the first of three chunks
    assert triage.retriage(library, {"Mass": 0.01}) == 7
    assert not triage.retriage_pending(library)
    triage.mark_retriage_pending(library)  # owed (a job wrote with old thresholds)
    assert triage.retriage_pending(library)
