"""A folder scored progressively end to end with the real engine, on SQLite and PostgreSQL.

After the fast pass every image has a provisional score and the worklist is fully ordered; the
paper jobs are claimed (and written) in decreasing provisional rare score; after the paper pass
no score is provisional, and the probabilities (the CLIP columns taken from the fast pass
included), rare scores and worklist order equal a paper-only run's on a library of its own
(probabilities within 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from cxrlt_desktop.library import progressive as prog
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import score_library
from cxrlt_desktop.library.worklist import query_worklist
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import Image, Prediction, probs_to_array

SIZE = 64


@pytest.fixture(scope="module")
def predictors(csra_ckpt, tmp_path_factory):
    from engine.predictor import EngineConfig, Predictor
    from engine.random_models import write_tiny_clip

    cache = tmp_path_factory.mktemp("cache")
    clip = write_tiny_clip(tmp_path_factory.mktemp("clip") / "clip", seed=0)
    base = dict(
        task1_checkpoints=[csra_ckpt],
        clip_model=clip,  # the paper pass reuses the fast pass's CLIP columns
        task1_arch="convnextv2_atto",
        image_size=SIZE,
        device="cpu",
        batch_size=1,
        cache_dir=cache,
    )
    fast = Predictor(EngineConfig(mode="fast", backbone_precision="auto", **base))
    paper = Predictor(EngineConfig(mode="paper", **base))
    return fast, paper


def _folder(tmp_path, write_study):
    for k in range(3):
        write_study(tmp_path / "in" / f"s{k}", 2, patient_id=f"P{k}")
    return tmp_path / "in"


def _current(store) -> dict[str, tuple[int, np.ndarray, float | None]]:
    """path -> (model set, probabilities, rare score) of each image's current prediction."""
    with store.session() as s, s.begin():
        rows = s.execute(
            select(Image.path, Prediction.model_set_id, Prediction.probs, Prediction.rare_score)
            .join(Prediction, Prediction.id == Image.current_prediction_id)
            .order_by(Image.path)
        ).all()
    return {p: (ms, probs_to_array(b), r) for p, ms, b, r in rows}


def _fast_set(s) -> int:
    """The fast model set (the library's one pair)."""
    from cxrlt_desktop.store.tables_progressive import ModelSetPair

    return s.scalar(select(ModelSetPair.fast_model_set_id))


def test_progressive_run_converges_to_the_paper_only_result(
    store_url, tmp_path, write_study, predictors
):
    fast, paper = predictors
    folder = _folder(tmp_path, write_study)
    # the paper predictor's real CLIP tower, counted: the progressive paper pass must not run it
    tower = paper._clip.image_runner
    assert tower is not None
    calls = []

    def counted(arr):
        calls.append(len(arr))
        return tower(arr)

    paper._clip.image_runner = counted
    store = open_store(store_url)
    try:
        for _ in scan(store, [folder]):
            pass
        with store.session() as s, s.begin():
            n_images = len(s.scalars(select(Image.id)).all())
        checked_between = False
        for name, _p in prog.score_progressive(store, fast, paper, batch_size=1, claim_size=1):
            if name == "paper" and not checked_between:
                # the fast pass is over: every image scored, all provisional, fully ordered
                checked_between = True
                cur = _current(store)
                assert len(cur) == n_images
                with store.session() as s, s.begin():
                    assert len(prog.provisional_images(s)) == n_images
                rows = query_worklist(store)
                assert all(r.provisional and r.n_scored == r.n_images for r in rows)
                assert all(r.rare_score is not None for r in rows)
                provisional = {path: r for path, (_, _, r) in cur.items()}
            if name == "paper":
                # each paper result replaces the fast one at once, not at the end of the run
                with store.session() as s, s.begin():
                    n_paper = len(
                        s.scalars(
                            select(Prediction.id).where(Prediction.model_set_id != _fast_set(s))
                        ).all()
                    )
                    assert len(prog.provisional_images(s)) == n_images - n_paper
        assert checked_between
        with store.session() as s, s.begin():
            assert prog.provisional_images(s) == set()
            paper_set = s.scalar(
                select(Prediction.model_set_id).where(
                    Prediction.id == select(Image.current_prediction_id).limit(1).scalar_subquery()
                )
            )
            # the paper results were written in decreasing provisional score (claim order)
            written = s.execute(
                select(Image.path)
                .join(Prediction, Prediction.image_id == Image.id)
                .where(Prediction.model_set_id == paper_set)
                .order_by(Prediction.id)
            ).all()
        order = [p for (p,) in written]
        scores = [provisional[p] for p in order]
        assert scores == sorted(scores, reverse=True)
        final = _current(store)
        final_rows = [(r.study_uid, r.rare_score, r.provisional) for r in query_worklist(store)]
    finally:
        store.close()
        paper._clip.image_runner = tower
    assert calls == []  # CLIP ran once per image, in the fast pass

    # paper only, on a library of its own
    other = open_store(f"sqlite:///{(tmp_path / 'paper-only.db').as_posix()}")
    try:
        for _ in scan(other, [folder]):
            pass
        for _ in score_library(other, paper, batch_size=2):
            pass
        alone = _current(other)
        alone_rows = [(r.study_uid, r.rare_score, r.provisional) for r in query_worklist(other)]
    finally:
        other.close()
    assert final.keys() == alone.keys()
    for path, (ms, probs, rare) in final.items():
        assert ms == paper_set
        np.testing.assert_allclose(probs, alone[path][1], atol=1e-6, rtol=0)
        assert rare == pytest.approx(alone[path][2], abs=1e-6)
    assert [u for u, _, _ in final_rows] == [u for u, _, _ in alone_rows]
    assert not any(p for _, _, p in final_rows)
