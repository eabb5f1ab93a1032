"""Operating thresholds belong to a model set: triage uses the thresholds of each prediction's
model set; the settings' thresholds migrate to the current model set; Settings changes move the
current model set only. On SQLite and PostgreSQL, with real scanned files."""

from __future__ import annotations

import pytest
from lib_triage_helpers import (
    image_id,
    model_set,
    probs,
    record_prediction,
    scan_folder,
    worklist_by_patient,
    write_image,
)
from sqlalchemy import func, select

from cxrlt_desktop.library.thresholds import (
    MIGRATED,
    USER,
    apply_settings_thresholds,
    migrate_settings_thresholds,
    thresholds_for,
    write_thresholds,
)
from cxrlt_desktop.library.triage import retriage
from engine.classes import DEFAULT_THRESHOLDS, RARE_CLASSES


def _hand_rare(p: dict[str, float], t: dict[str, float]) -> float:
    """max over the rare classes of p / t, every other class at 0.01 (independent loop)."""
    return max(p.get(c, 0.01) / t.get(c, DEFAULT_THRESHOLDS[c]) for c in RARE_CLASSES)


@pytest.fixture
def two_studies(any_store, tmp_path):
    """Two studies (patients A and B), one image each, scanned."""
    folder = tmp_path / "in"
    folder.mkdir()
    a = write_image(folder, "a", patient="A")
    b = write_image(folder, "b", patient="B")
    scan_folder(any_store, folder)
    return any_store, image_id(any_store, a), image_id(any_store, b)


def test_two_model_sets_give_different_flags_for_the_same_probabilities(two_studies):
    store, img_a, img_b = two_studies
    m1, m2 = model_set(store, "set-one"), model_set(store, "set-two")
    store.write(lambda s: write_thresholds(s, m1, {"Pneumothorax": 0.3}, USER))
    store.write(lambda s: write_thresholds(s, m2, {"Pneumothorax": 0.6}, USER))
    same = probs(Pneumothorax=0.4)
    record_prediction(store, img_a, m1, same)
    record_prediction(store, img_b, m2, same)
    assert retriage(store, None) == 2
    rows = worklist_by_patient(store)
    a, b = rows["A"], rows["B"]
    assert a.rare_score == pytest.approx(_hand_rare({"Pneumothorax": 0.4}, {"Pneumothorax": 0.3}))
    assert b.rare_score == pytest.approx(_hand_rare({"Pneumothorax": 0.4}, {"Pneumothorax": 0.6}))
    assert a.flagged and not b.flagged
    assert (a.n_above, b.n_above) == (1, 0)  # 0.4 >= 0.3 but < 0.6
    # The flagged study is first in the worklist.
    from cxrlt_desktop.library import query_worklist

    assert [r.patient for r in query_worklist(store, show_phi=True)] == ["A", "B"]
    # The finding filter follows each model set's threshold too.
    found = query_worklist(store, finding="Pneumothorax", show_phi=True)
    assert [r.patient for r in found] == ["A"]


def test_thresholds_in_force_say_where_they_came_from(two_studies):
    store, img_a, _ = two_studies
    m1 = model_set(store, "set-one")
    store.write(lambda s: write_thresholds(s, m1, {"Pneumothorax": 0.3, "Mass": 0.7}, USER))
    with store.session() as s, s.begin():
        ts = thresholds_for(s, m1, {"Scoliosis": 0.9, "Mass": 0.2})
    assert ts.values["Pneumothorax"] == 0.3 and ts.sources["Pneumothorax"] == USER
    assert ts.values["Mass"] == 0.7  # the model set's row wins over the settings
    assert ts.values["Scoliosis"] == 0.9 and ts.sources["Scoliosis"] == "settings"
    assert ts.values["Bulla"] == DEFAULT_THRESHOLDS["Bulla"] and ts.sources["Bulla"] == "default"
    n = len(DEFAULT_THRESHOLDS)
    assert ts.counts() == {"default": n - 3, "user": 2, "settings": 1}
    assert ts.describe() == (
        f"Thresholds of model set {m1} (set-one): {n - 3} default, 2 user, 1 settings"
    )
    with pytest.raises(ValueError, match="'Mass'"):
        store.write(lambda s: write_thresholds(s, m1, {"Mass": 1.5}, USER))
    with pytest.raises(ValueError, match="unknown finding 'Nope'"):
        store.write(lambda s: write_thresholds(s, m1, {"Nope": 0.5}, USER))


def test_migration_keeps_todays_thresholds(two_studies):
    """A library scored before thresholds were per model set: the settings' thresholds become
    the current model set's, and every score and flag stays what it was."""
    from cxrlt_desktop.store.tables_thresholds import ModelSetThreshold

    store, img_a, img_b = two_studies
    settings = {"Pneumothorax": 0.3, "Scoliosis": 0.95}
    old = model_set(store, "old-models")
    record_prediction(store, img_a, old, probs(Pneumothorax=0.35))
    record_prediction(store, img_b, old, probs(Scoliosis=0.9))
    current = model_set(store, "current-models")  # the newest run: the current model set
    record_prediction(store, img_a, current, probs(Pneumothorax=0.4))
    record_prediction(store, img_b, current, probs(Scoliosis=0.9))
    # Today's behaviour: global thresholds from the settings (a model set without rows uses
    # the settings' values, so retriage with them is what the library showed before).
    retriage(store, settings)
    before = {
        k: (r.rare_score, r.flagged, r.n_above) for k, r in worklist_by_patient(store).items()
    }
    assert before["A"][0] == pytest.approx(_hand_rare({"Pneumothorax": 0.4}, settings))
    assert before["B"][0] == pytest.approx(_hand_rare({"Scoliosis": 0.9}, settings))
    assert before["A"][1] and not before["B"][1]
    # retriage migrated them to the current model set on its way
    with store.session() as s, s.begin():
        rows = {
            (r.model_set_id, r.finding): (r.threshold, r.source)
            for r in s.scalars(select(ModelSetThreshold)).all()
        }
    assert rows == {
        (current, "Pneumothorax"): (0.3, MIGRATED),
        (current, "Scoliosis"): (0.95, MIGRATED),
    }
    assert migrate_settings_thresholds(store, settings) is None  # once only
    # The settings file no longer matters for the current model set: same flags without it.
    retriage(store, None)
    after = {k: (r.rare_score, r.flagged, r.n_above) for k, r in worklist_by_patient(store).items()}
    assert after == before


def test_migration_only_when_the_library_has_no_rows(two_studies):
    store, img_a, _ = two_studies
    assert migrate_settings_thresholds(store, {"Pneumothorax": 0.3}) is None  # no model set
    m = model_set(store, "only")
    assert migrate_settings_thresholds(store, {}) is None  # nothing to migrate
    assert migrate_settings_thresholds(store, {"Pneumothorax": 0.3}) == m
    with store.session() as s, s.begin():
        ts = thresholds_for(s, m)
    assert (ts.values["Pneumothorax"], ts.sources["Pneumothorax"]) == (0.3, MIGRATED)
    assert migrate_settings_thresholds(store, {"Pneumothorax": 0.2}) is None


def test_settings_change_moves_the_current_model_set_only(two_studies):
    from cxrlt_desktop.store.tables_thresholds import ModelSetThreshold

    store, img_a, img_b = two_studies
    m1 = model_set(store, "first")
    store.write(lambda s: write_thresholds(s, m1, {"Pneumothorax": 0.3}, "calibration cal.json"))
    record_prediction(store, img_a, m1, probs(Pneumothorax=0.4))
    m2 = model_set(store, "second")  # newest: current
    record_prediction(store, img_b, m2, probs(Pneumothorax=0.4))
    retriage(store, {"Pneumothorax": 0.45})
    with store.session() as s, s.begin():
        t1, t2 = thresholds_for(s, m1), thresholds_for(s, m2)
    assert (t1.values["Pneumothorax"], t1.sources["Pneumothorax"]) == (0.3, "calibration cal.json")
    assert (t2.values["Pneumothorax"], t2.sources["Pneumothorax"]) == (0.45, USER)
    rows = worklist_by_patient(store)
    assert rows["A"].flagged and not rows["B"].flagged
    # The override removed in Settings: the current model set's user row goes back to default.
    assert apply_settings_thresholds(store, {}) == m2
    with store.session() as s, s.begin():
        assert thresholds_for(s, m2).sources["Pneumothorax"] == "default"
        n = s.scalar(select(func.count()).select_from(ModelSetThreshold))
    assert n == 1  # the first model set's calibrated row stays


def test_scoring_uses_the_thresholds_of_its_model_set(any_store, tmp_path, predictor):
    """Real scoring: the new predictions are triaged with their model set's rows, the settings'
    thresholds filling in the findings it has no row for."""
    import numpy as np

    from cxrlt_desktop.library import score_library
    from cxrlt_desktop.library.scoring import register_model_set
    from cxrlt_desktop.store.models import Prediction
    from engine.classes import ALL_CLASSES

    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder, "a", patient="A")
    write_image(folder, "b", patient="B")
    scan_folder(any_store, folder)
    ms, _ = any_store.write(lambda s: register_model_set(s, predictor))
    any_store.write(lambda s: write_thresholds(s, ms, {"Pneumothorax": 0.011}, USER))
    settings = {"Pneumothorax": 0.9, "Mass": 0.013}
    for _ in score_library(any_store, predictor, thresholds=settings):
        pass
    t = dict(DEFAULT_THRESHOLDS, Pneumothorax=0.011, Mass=0.013)  # row, then settings
    with any_store.session() as s, s.begin():
        preds = s.scalars(select(Prediction)).all()
        assert len(preds) == 2 and {p.model_set_id for p in preds} == {ms}
        for pred in preds:
            p = pred.probabilities()
            expected = max(
                p[k] / t[c]
                for k, c in enumerate(ALL_CLASSES)
                if c in RARE_CLASSES and not np.isnan(p[k])
            )
            assert pred.rare_score == pytest.approx(expected, rel=1e-6)


def test_cli_shows_and_imports_thresholds_per_model_set(two_studies, tmp_path, capsys):
    """``cxrlt thresholds``: what each model set uses and where it came from; ``--import`` gives
    the current model set calibrated thresholds and re-sorts the library; bad files refused in
    one line naming the file."""
    import json

    from cxrlt_desktop.cli import main

    store, img_a, img_b = two_studies
    m1 = model_set(store, "older")
    record_prediction(store, img_a, m1, probs(Pneumothorax=0.4))
    m2 = model_set(store, "newer")
    record_prediction(store, img_b, m2, probs(Pneumothorax=0.4))
    retriage(store, None)
    assert not worklist_by_patient(store)["B"].flagged
    db = ["--db", store.url]
    cal = tmp_path / "site-cal.json"
    cal.write_text(json.dumps({"pneumothorax": 0.35, "Pleural effusion": 0.2}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Pneumothorax": 2}))
    assert main(["thresholds", *db, "--import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cxrlt thresholds: error: {bad}: ") and "'Pneumothorax'" in err
    assert main(["thresholds", *db, "--import", str(cal)]) == 0
    out = capsys.readouterr().out
    assert f"model set {m2}: 2 thresholds from calibration site-cal.json" in out
    rows = worklist_by_patient(store)
    assert rows["B"].flagged and not rows["A"].flagged  # 0.4 >= 0.35 for the newer set only
    assert main(["thresholds", *db, "--json"]) == 0
    out = {d["model_set"]: d for d in json.loads(capsys.readouterr().out)}
    assert out[m2]["current"] and not out[m1]["current"]
    assert out[m2]["thresholds"]["Pneumothorax"] == 0.35
    assert out[m2]["sources"]["Pneumothorax"] == "calibration site-cal.json"
    assert out[m1]["thresholds"]["Pneumothorax"] == DEFAULT_THRESHOLDS["Pneumothorax"]
    assert main(["thresholds", *db, "--model-set", str(m2)]) == 0
    text = capsys.readouterr().out
    assert "[current]" in text and "calibration site-cal.json" in text
