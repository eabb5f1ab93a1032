"""The window's own scoring follows the scoring policy: on a CPU the default ("auto") is the
progressive policy, a fast pass over every image and then the paper pass; "paper" scores once.

A real window scores phantom studies with the test models (random-weight ConvNeXtV2-atto
checkpoints and a tiny CLIP on the CPU). What is checked comes from the store and from a
paper-only run of an independent predictor over the same files: after the progressive run no
score is provisional and every image's shown probabilities equal the paper-only ones.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from gui_helpers import make_study_folder
from sqlalchemy import func, select

SIZE = 64


def _shown(store) -> dict[str, tuple[int, np.ndarray]]:
    """path -> (model set, probabilities) of each scored image's current prediction."""
    from cxrlt_desktop.store.models import Image, Prediction, probs_to_array

    with store.session() as s, s.begin():
        rows = s.execute(
            select(Image.path, Prediction.model_set_id, Prediction.probs).join(
                Prediction, Prediction.id == Image.current_prediction_id
            )
        ).all()
    return {p: (ms, probs_to_array(b)) for p, ms, b in rows}


def _run(qtbot, window, folder) -> tuple[object, list[str]]:
    texts: list[str] = []
    window.jobs.progress.connect(lambda p: texts.append(p.text))
    with qtbot.waitSignal(window.jobFinished, timeout=300_000) as job:
        window.open_paths([folder])
    return job.args[0], texts


def test_default_cpu_policy_is_progressive_and_ends_at_the_paper_result(
    qtbot, make_window, model_settings, store, tmp_path
):
    from cxrlt_desktop.library.progressive import provisional_images
    from cxrlt_desktop.store.tables_progressive import ModelSetPair
    from engine.predictor import Predictor

    folder = make_study_folder(tmp_path / "in", None, n_phantoms=4, broken=False)
    assert model_settings.policy == "auto"
    window = make_window(model_settings)
    result, texts = _run(qtbot, window, folder)
    assert result.ok, result.error

    # the passes in order: every fast record before the first paper record
    passes = [t for t in texts if t in ("Fast pass (provisional)", "Paper pass")]
    assert passes and passes[0] == "Fast pass (provisional)" and passes[-1] == "Paper pass"
    assert passes == sorted(passes, key=lambda t: t != "Fast pass (provisional)")
    assert "progressive" in window.status_bar.model_status.text()
    paper_predictor = window.predictors.loaded()
    fast_predictor = window.predictors.fast_pass(paper_predictor)
    assert paper_predictor.has_clip and fast_predictor._clip is paper_predictor._clip  # one CLIP

    with store.session() as s, s.begin():
        fast_id, paper_id = s.execute(
            select(ModelSetPair.fast_model_set_id, ModelSetPair.paper_model_set_id)
        ).one()
        assert s.scalar(select(func.count()).select_from(ModelSetPair)) == 1
        assert provisional_images(s) == set()
    shown = _shown(store)
    assert len(shown) == 4  # one image per phantom study
    assert {ms for ms, _ in shown.values()} == {paper_id}

    # the paper-only result, from a predictor of its own over the same files
    config = model_settings.engine_config(image_size=SIZE, cache_dir=tmp_path / "cache2")
    paper = Predictor(replace(config, mode="paper", device="cpu"))
    paths = sorted(shown)
    for path, want in zip(paths, paper.predict_paths(paths), strict=True):
        assert want.ok, want.reason
        np.testing.assert_allclose(shown[path][1], want.probs, atol=1e-6, rtol=0)


def test_paper_policy_scores_once(qtbot, make_window, model_settings, store, tmp_path):
    from cxrlt_desktop.store.models import ModelSet
    from cxrlt_desktop.store.tables_progressive import ModelSetPair

    folder = make_study_folder(tmp_path / "in", None, n_phantoms=2, broken=False)
    window = make_window(replace(model_settings, policy="paper"))
    result, texts = _run(qtbot, window, folder)
    assert result.ok, result.error
    assert result.scored == 2
    assert "Fast pass (provisional)" not in texts and "Paper pass" not in texts
    assert "progressive" not in window.status_bar.model_status.text()
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count()).select_from(ModelSetPair)) == 0
        assert s.scalar(select(func.count()).select_from(ModelSet)) == 1
