"""The findings panel on hand-made results whose highlighting and markers are known."""

from __future__ import annotations

import numpy as np
import pytest

from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS, TASK1_CLASSES, TASK2_CLASSES


@pytest.fixture
def panel(qtbot):
    from cxrlt_desktop.ui.findings_panel import FindingsPanel

    p = FindingsPanel()
    p.resize(460, 900)
    qtbot.addWidget(p)
    p.show()
    qtbot.waitExposed(p)
    return p


def _probs() -> tuple[np.ndarray, np.ndarray]:
    probs = np.full(36, 0.1)
    ungated = np.full(30, 0.1)
    i = ALL_CLASSES.index
    probs[i("cardiomegaly")] = 0.7  # above 0.5
    ungated[i("cardiomegaly")] = 0.75
    probs[i("Pneumothorax")] = 0.3  # gating cut 0.8 -> 0.3: more than half
    ungated[i("Pneumothorax")] = 0.8
    probs[i("Mass")] = 0.45  # 0.8 -> 0.45: less than half cut, no marker
    ungated[i("Mass")] = 0.8
    probs[i("Scoliosis")] = 0.85  # zero-shot, threshold 0.8
    probs[i("Bulla")] = 0.79
    return probs, ungated


def test_two_groups_with_uncalibrated_zero_shot(panel):
    names = panel.finding_names()
    assert names == list(TASK1_CLASSES) + list(TASK2_CLASSES)
    assert "30" in panel.task1_header.text()
    assert "uncalibrated" in panel.task2_header.text()
    # The zero-shot header sits between the last supervised and the first zero-shot row.
    y = lambda w: w.mapTo(panel, w.rect().topLeft()).y()  # noqa: E731
    assert y(panel.row(TASK1_CLASSES[-1])) < y(panel.task2_header) < y(panel.row(TASK2_CLASSES[0]))


def test_highlight_gating_marker_and_threshold_tick(panel):
    from cxrlt_desktop.ui.findings_panel import results_from_prediction

    probs, ungated = _probs()
    thresholds = dict(DEFAULT_THRESHOLDS, cardiomegaly=0.6)
    panel.set_results(results_from_prediction(probs, thresholds, ungated, True))
    assert set(panel.highlighted()) == {"cardiomegaly", "Scoliosis"}
    assert panel.gated_markers() == ["Pneumothorax"]
    assert "0.80" in panel.row("Pneumothorax").gate_label.toolTip()
    row = panel.row("cardiomegaly")
    assert row.prob_label.text() == "0.70"
    bar = row.bar
    assert bar.threshold_x() == pytest.approx(1 + 0.6 * (bar.width() - 2))
    assert (
        panel.row("Bulla").prob_label.text() == "0.79" and not panel.row("Bulla").is_highlighted()
    )


def test_unscored_image_shows_dashes_and_disables_verdicts(panel):
    panel.set_results(None)
    assert panel.row("Mass").prob_label.text() == "-"
    assert not panel.row("Mass").buttons["present"].isEnabled()
    assert not panel.agree_button.isEnabled()


def test_verdict_buttons_and_keys_emit_requests(panel, qtbot):
    from cxrlt_desktop.ui.findings_panel import results_from_prediction

    probs, ungated = _probs()
    panel.set_results(results_from_prediction(probs, DEFAULT_THRESHOLDS, ungated, False))
    with qtbot.waitSignal(panel.verdictRequested, timeout=1000) as blocker:
        panel.row("Mass").buttons["absent"].click()
    assert blocker.args == ["Mass", "absent"]
    assert panel.current_finding() == "Mass"
    panel.next_finding()
    assert panel.current_finding() == TASK1_CLASSES[TASK1_CLASSES.index("Mass") + 1]
    with qtbot.waitSignal(panel.verdictRequested, timeout=1000) as blocker:
        panel.request_verdict("uncertain")
    assert blocker.args == [panel.current_finding(), "uncertain"]
    panel.select_finding(ALL_CLASSES[-1])
    panel.next_finding()  # wraps to the first finding
    assert panel.current_finding() == ALL_CLASSES[0]
    panel.previous_finding()
    assert panel.current_finding() == ALL_CLASSES[-1]
    panel.set_verdicts({"Mass": "present"})
    assert panel.verdicts() == {"Mass": "present"}
    panel.set_verdict("Mass", None)
    assert panel.verdicts() == {}


def test_note_emits_once_per_change(panel, qtbot):
    from cxrlt_desktop.ui.findings_panel import results_from_prediction

    probs, ungated = _probs()
    panel.set_results(results_from_prediction(probs, DEFAULT_THRESHOLDS, ungated, False))
    panel.set_note("old")
    panel.note_edit.setText("new note")
    with qtbot.waitSignal(panel.noteEdited, timeout=1000) as blocker:
        panel.note_edit.editingFinished.emit()
    assert blocker.args == ["new note"]
    with qtbot.assertNotEmitted(panel.noteEdited):
        panel.note_edit.editingFinished.emit()
