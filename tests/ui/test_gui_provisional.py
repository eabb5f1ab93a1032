"""Provisional (fast-pass) scores are marked in the GUI: italics and a tooltip in the worklist,
a notice in the findings panel; gone once the image shows a final score.

A real window scores a phantom study with the test models (on the CPU: progressive, so the shown
score is the paper pass's); the shown score's model set is then paired as the fast pass of
another (paper) model set, which makes the shown scores provisional (what the progressive policy's
fast pass leaves), and every pair is removed again.
"""

from __future__ import annotations

import secrets

from PySide6.QtCore import Qt
from sqlalchemy import delete, select


def test_provisional_scores_in_italics_and_noticed(qtbot, make_scored_window, store):
    from cxrlt_desktop.library import progressive
    from cxrlt_desktop.store.models import Image, ModelSet, Prediction
    from cxrlt_desktop.store.tables_progressive import ModelSetPair
    from cxrlt_desktop.ui.worklist_model import COLUMNS, PROVISIONAL_NOTE

    window = make_scored_window(1)
    model = window.worklist_model
    col = COLUMNS.index("priority")

    def italic() -> bool:
        font = model.index(0, col).data(Qt.ItemDataRole.FontRole)
        return font is not None and font.italic()

    def reload() -> None:
        """The worklist re-queried, the open image's findings shown again (what a live update
        does)."""
        with qtbot.waitSignal(window.worklistRefreshed, timeout=30_000):
            window.refresh_worklist()
        window.review.show(window.current_image())

    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_study(model.rows()[0].study_uid)
    reload()
    assert not italic() and not window.findings.notice.isVisible()

    def pair(s):
        scored = s.scalar(
            select(Prediction.model_set_id).join(
                Image, Image.current_prediction_id == Prediction.id
            )
        )
        paper = ModelSet(key=secrets.token_hex(32), description={"settings": {"mode": "paper"}})
        s.add(paper)
        s.flush()
        progressive.pair_model_sets(s, scored, paper.id)

    store.write(pair)
    reload()
    assert model.rows()[0].provisional
    assert italic()
    assert model.index(0, col).data(Qt.ItemDataRole.ToolTipRole) == PROVISIONAL_NOTE
    assert window.findings.notice.isVisible()
    assert progressive.PROVISIONAL_NOTE in window.findings.notice.text()

    store.write(lambda s: s.execute(delete(ModelSetPair)))
    reload()
    assert not italic() and not window.findings.notice.isVisible()
