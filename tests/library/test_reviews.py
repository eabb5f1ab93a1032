"""Verdicts, notes, agree-with-all: committed at once, audited, reflected in the study status
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from cxrlt_desktop.library.reviews import (
    ReviewError,
    agree_with_all,
    image_note,
    image_verdicts,
    set_image_note,
    set_verdict,
)
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import score_library
from cxrlt_desktop.store.models import AuditEvent, Image, Prediction, Review
from engine.classes import ALL_CLASSES


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL (``any_store``)."""
    return any_store


@pytest.fixture
def two_images(store, tmp_path, write_study):
    write_study(tmp_path / "r", 2)
    for _ in scan(store, [tmp_path / "r"]):
        pass
    with store.session() as s, s.begin():
        return s.scalars(select(Image.id).order_by(Image.id)).all()


def test_verdict_commit_audit_and_status(store, two_images):
    a, b = two_images
    r = set_verdict(store, a, "Pneumothorax", "present", reviewer="dr A", note="apex")
    assert r.review_status == "partial"
    # A second store on the same file sees it at once: committed before returning.
    from cxrlt_desktop.store import open_store

    other = open_store(store.url)
    v = image_verdicts(other, a)["Pneumothorax"]
    assert (v.verdict, v.note, v.reviewer, v.prediction_id) == ("present", "apex", "dr A", None)
    other.close()
    set_verdict(store, a, "Pneumothorax", "uncertain", reviewer="dr B")
    assert image_verdicts(store, a)["Pneumothorax"].verdict == "uncertain"
    assert set_verdict(store, b, "Mass", "absent", reviewer="dr A").review_status == "reviewed"
    assert set_verdict(store, b, "Mass", None, reviewer="dr A").review_status == "partial"
    with store.session() as s, s.begin():
        assert s.scalar(select(Review).where(Review.image_id == b)) is None
        events = s.execute(
            select(AuditEvent.action, AuditEvent.finding, AuditEvent.old, AuditEvent.new)
            .where(AuditEvent.image_id == a)
            .order_by(AuditEvent.id)
        ).all()
    assert [e[0] for e in events] == ["verdict", "verdict"]
    assert events[1].old["verdict"] == "present" and events[1].new["verdict"] == "uncertain"


def test_bad_verdicts_named(store, two_images):
    a = two_images[0]
    with pytest.raises(ReviewError, match="unknown finding 'Unicorn'"):
        set_verdict(store, a, "Unicorn", "present", reviewer="dr")
    with pytest.raises(ReviewError, match="'maybe'"):
        set_verdict(store, a, "Mass", "maybe", reviewer="dr")
    with pytest.raises(ReviewError, match="reviewer"):
        set_verdict(store, a, "Mass", "present", reviewer=" ")
    with pytest.raises(ReviewError, match="image 999"):
        set_verdict(store, 999, "Mass", "present", reviewer="dr")


def test_reviewer_name_longer_than_kept_refused_with_reason(store, two_images):
    """PostgreSQL refuses a value longer than its column (a raw database error lost the
    verdict); SQLite would keep it: both refuse it the same way, naming the limit, and a name
    of exactly 128 characters is kept whole."""
    a = two_images[0]
    with pytest.raises(ReviewError, match="129 characters; at most 128"):
        set_verdict(store, a, "Mass", "present", reviewer="R" * 129)
    with pytest.raises(ReviewError, match="at most 128"):
        set_image_note(store, a, "n", reviewer="R" * 129)
    set_verdict(store, a, "Mass", "present", reviewer="R" * 128)
    assert image_verdicts(store, a)["Mass"].reviewer == "R" * 128


def test_note(store, two_images):
    a = two_images[0]
    set_image_note(store, a, "  check old films ", reviewer="dr")
    assert image_note(store, a) == "check old films"
    set_image_note(store, a, "", reviewer="dr")
    assert image_note(store, a) is None


def test_agree_with_all_follows_thresholds(store, two_images, predictor):
    a = two_images[0]
    with pytest.raises(ReviewError, match="no prediction"):
        agree_with_all(store, a, reviewer="dr")
    for _ in score_library(store, predictor):
        pass
    set_verdict(store, a, "Mass", "uncertain", reviewer="dr")
    res = agree_with_all(store, a, reviewer="dr", thresholds={"cardiomegaly": 0.01})
    with store.session() as s, s.begin():
        img = s.get(Image, a)
        p = s.get(Prediction, img.current_prediction_id).probabilities()
    # No CLIP model: the 6 zero-shot findings are NaN and get no verdict; Mass was set by hand.
    assert np.isnan(p).sum() == 6
    assert res.changed == len(ALL_CLASSES) - 6 - 1 and res.review_status == "partial"
    verdicts = image_verdicts(store, a)
    assert verdicts["Mass"].verdict == "uncertain"  # kept: set by hand before
    assert verdicts["cardiomegaly"].verdict == "present"  # p >= 0.01
    for k, c in enumerate(ALL_CLASSES):
        if c in ("Mass", "cardiomegaly"):
            continue
        if np.isnan(p[k]):
            assert c not in verdicts
            continue
        from engine.classes import DEFAULT_THRESHOLDS

        assert verdicts[c].verdict == ("present" if p[k] >= DEFAULT_THRESHOLDS[c] else "absent")
        assert verdicts[c].prediction_id == img.current_prediction_id
