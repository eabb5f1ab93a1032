"""A NaN or infinite probability never reaches the store, the triage or the worklist: the image
fails with the findings named. The NaN comes from a real broken model (a checkpoint whose
classifier bias is NaN, run by the real engine); an infinity, which no real model file yields
through a sigmoid, is put into the real predictor's results by a thin wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import invalid_probabilities, score_library
from cxrlt_desktop.library.worklist import query_worklist
from cxrlt_desktop.store.models import Image, Prediction, ScoreFailure, Study
from engine.classes import ALL_CLASSES, TASK1_CLASSES


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_store


@pytest.fixture
def library(store, tmp_path, write_study):
    write_study(tmp_path / "lib" / "a", 2, patient_id="A")
    write_study(tmp_path / "lib" / "b", 2, patient_id="B")
    for _ in scan(store, [tmp_path / "lib"]):
        pass
    return store


@pytest.fixture(scope="module")
def nan_predictor(tmp_path_factory, csra_ckpt):
    """The test model with a NaN classifier bias: every Task 1 probability is NaN (built once:
    the SQLite and PostgreSQL runs share it)."""
    import torch
    from safetensors.torch import load_file, save_file

    from engine.predictor import EngineConfig, Predictor

    weights = load_file(csra_ckpt)
    weights["head.classifier.bias"] = torch.full_like(weights["head.classifier.bias"], np.nan)
    broken = tmp_path_factory.mktemp("nan") / "broken.safetensors"
    save_file(weights, broken)
    return Predictor(
        EngineConfig(
            task1_checkpoints=[broken],
            task1_arch="convnextv2_atto",
            mode="fast",
            image_size=64,
            device="cpu",
            batch_size=2,
            decode_workers=1,
        )
    )


def test_a_broken_model_scores_nothing(library, nan_predictor):
    progs = list(score_library(library, nan_predictor))
    assert progs[-1].finished and progs[-1].done == 0 and progs[-1].failed == 4
    reasons = {r for p in progs for _path, r in p.last_errors}
    assert reasons == {
        "the model returned an invalid probability (NaN, infinity or outside 0..1) for "
        f"{', '.join(TASK1_CLASSES[:3])} and 27 more: not scored"
    }
    with library.session() as s, s.begin():
        assert s.scalar(select(func.count(Prediction.id))) == 0
        assert s.scalar(select(func.count(ScoreFailure.image_id))) == 4
        assert s.scalars(select(Study.priority)).all() == [-1.0, -1.0]
        assert s.scalars(select(Study.n_failed)).all() == [2, 2]
    assert [r.rare_score for r in query_worklist(library)] == [None, None]


class _Infinite:
    """The real predictor, with one probability of one file replaced by ``value``."""

    def __init__(self, real, path, finding, value):
        self.real, self.path, self.k, self.value = (
            real,
            str(path),
            ALL_CLASSES.index(finding),
            value,
        )
        self.models, self.settings = real.models, real.settings

    def predict_paths(self, paths, **kw):
        for res in self.real.predict_paths(paths, **kw):
            if str(res.path) == self.path and res.ok:
                res.probs = res.probs.copy()
                res.probs[self.k] = self.value
            yield res


@pytest.mark.parametrize("value", [np.inf, 1.5, -0.25])
def test_an_invalid_rare_probability_fails_the_image_instead_of_topping_the_worklist(
    library, predictor, value
):
    with library.session() as s, s.begin():
        bad = s.scalars(select(Image.path).order_by(Image.id)).first()
    progs = list(score_library(library, _Infinite(predictor, bad, "Pneumothorax", value)))
    assert progs[-1].done == 3 and progs[-1].failed == 1
    assert [e for p in progs for e in p.last_errors] == [
        (
            bad,
            "the model returned an invalid probability (NaN, infinity or outside 0..1) for "
            "Pneumothorax: not scored",
        )
    ]
    with library.session() as s, s.begin():
        image = s.scalars(select(Image).where(Image.path == bad)).one()
        assert image.current_prediction_id is None
        assert s.scalar(select(func.count(Prediction.id))) == 3
        assert all(np.isfinite(s.scalars(select(Study.priority)).all()))
        assert max(s.scalars(select(Prediction.rare_score)).all()) < 2.0  # 1 / 0.5 at most


def test_nan_only_where_a_task_is_not_configured():
    task1 = np.zeros(len(ALL_CLASSES), dtype=bool)
    task1[: len(TASK1_CLASSES)] = True
    p = np.full(len(ALL_CLASSES), 0.2)
    p[len(TASK1_CLASSES) :] = np.nan  # no CLIP model: the zero-shot columns are NaN
    assert invalid_probabilities(p, task1) is None
    p[3] = np.nan  # a Task 1 column the model computes
    assert "for pleural effusion: not scored" in invalid_probabilities(p, task1)
