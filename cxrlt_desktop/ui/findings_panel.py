"""The findings panel: 30 in-distribution and 6 zero-shot findings with verdict buttons.

Each row shows the finding, its probability, a bar with the operating threshold marked, a
marker where normal gating lowered the score by more than half, and present / absent /
uncertain buttons. Rows at or above threshold are highlighted. The zero-shot group is labelled
as uncalibrated. The panel never touches the store: it emits requests, and the main window
commits them and reports the committed state back with :meth:`FindingsPanel.set_verdict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

VERDICT_LABELS = {"present": "P", "absent": "A", "uncertain": "U"}
GATING_MARK = "\u25bc"  # a small down-pointing triangle
ABOVE_STYLE = "background-color: #fff0c2;"
CURRENT_STYLE = "border: 2px solid #2a7ae2;"
NAME_WIDTH = 172


@dataclass
class FindingResult:
    """What the panel shows for one finding of one image.

    ``probability`` is NaN or None when the task's model was not configured; ``ungated`` is
    the Task 1 probability before normal gating (None for zero-shot findings or when unknown).
    """

    name: str
    display_name: str
    task: int
    probability: float | None
    threshold: float
    ungated: float | None = None
    has_attention: bool = False

    @property
    def scored(self) -> bool:
        return self.probability is not None and not math.isnan(self.probability)

    @property
    def above(self) -> bool:
        return self.scored and self.probability >= self.threshold  # type: ignore[operator]

    @property
    def gated_down(self) -> bool:
        """True when normal gating cut the score to less than half of the ungated one."""
        if not self.scored or self.ungated is None or math.isnan(self.ungated):
            return False
        return self.ungated > 0 and self.probability < 0.5 * self.ungated  # type: ignore[operator]


def image_title(entry) -> str:
    """The panel title for an image (``store_access.ImageEntry``): file name, view and series,
    and "not scored yet" while it has no prediction."""
    from pathlib import Path

    title = Path(entry.path).name
    extra = [
        x
        for x in (
            entry.view_position,
            f"series {entry.series_number}" if entry.series_number is not None else None,
        )
        if x
    ]
    if extra:
        title += f" ({', '.join(extra)})"
    if entry.probs is None:
        title += " - not scored yet"
    return title


def results_from_prediction(
    probs, thresholds: dict[str, float], ungated=None, attention_present: bool = False
) -> list[FindingResult]:
    """Turn the engine's 36 probabilities (ALL_CLASSES order) into panel rows.

    Parameters
    ----------
    probs
        36 floats or None (image not scored yet).
    thresholds
        Operating threshold per class name (missing names fall back to the class defaults).
    ungated
        30 Task 1 probabilities before normal gating, or None.
    attention_present
        Whether CSRA attention maps exist for the Task 1 findings.
    """
    from engine.classes import class_table

    rows = []
    for i, info in enumerate(class_table()):
        p = None if probs is None else float(probs[i])
        u = None
        if ungated is not None and info.task == 1 and i < len(ungated):
            u = float(ungated[i])
        rows.append(
            FindingResult(
                name=info.name,
                display_name=info.display_name,
                task=info.task,
                probability=p,
                threshold=float(thresholds.get(info.name, info.threshold)),
                ungated=u,
                has_attention=attention_present and info.task == 1,
            )
        )
    return rows


class ProbabilityBar(QWidget):
    """A horizontal bar for a probability in [0, 1] with a tick at the threshold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._value: float | None = None
        self._threshold = 0.5
        self.setMinimumWidth(80)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(120, 14)

    def set_values(self, value: float | None, threshold: float) -> None:
        self._value = value
        self._threshold = threshold
        self.update()

    def threshold_x(self) -> float:
        """The threshold tick's x position in widget pixels (tests check it)."""
        return 1 + self._threshold * (self.width() - 2)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        r = QRectF(0.5, 2.5, self.width() - 1, self.height() - 5)
        p.setPen(QPen(QColor("#888888"), 1))
        p.setBrush(QColor("#f4f4f4"))
        p.drawRect(r)
        if self._value is not None and not math.isnan(self._value):
            above = self._value >= self._threshold
            fill = QRectF(
                r.left(), r.top(), r.width() * max(0.0, min(1.0, self._value)), r.height()
            )
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#d9480f" if above else "#4c86c6"))
            p.drawRect(fill)
        x = self.threshold_x()
        p.setPen(QPen(QColor("#111111"), 2))
        p.drawLine(int(round(x)), 0, int(round(x)), self.height())
        p.end()


class _FindingRow(QFrame):
    clicked = Signal(str)
    verdictClicked = Signal(str, str)

    def __init__(self, name: str, display_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName("findingRow")
        self.result: FindingResult | None = None
        self._current = False
        self._sheet = ""
        self._bold = False
        self.name_label = QLabel(display_name)
        # A fixed name column keeps every bar and threshold tick in one vertical line.
        self.name_label.setFixedWidth(NAME_WIDTH)
        self.prob_label = QLabel("-")
        self.prob_label.setFixedWidth(36)
        self.prob_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = ProbabilityBar()
        self.gate_label = QLabel("")
        self.gate_label.setFixedWidth(14)
        self.buttons: dict[str, QToolButton] = {}
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 1, 4, 1)
        layout.setSpacing(4)
        layout.addWidget(self.name_label)
        layout.addWidget(self.prob_label)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.gate_label)
        for verdict, letter in VERDICT_LABELS.items():
            b = QToolButton()
            b.setText(letter)
            b.setCheckable(True)
            b.setToolTip(f"Mark {display_name} as {verdict}")
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda _=False, v=verdict: self.verdictClicked.emit(self.name, v))
            self.group.addButton(b)
            self.buttons[verdict] = b
            layout.addWidget(b)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.clicked.emit(self.name)
        super().mousePressEvent(event)

    def set_result(self, result: FindingResult | None) -> None:
        self.result = result
        if result is None or not result.scored:
            self.prob_label.setText("-")
            self.bar.set_values(None, result.threshold if result else 0.5)
            self.gate_label.setText("")
            self.gate_label.setToolTip("")
        else:
            self.prob_label.setText(f"{result.probability:.2f}")
            self.bar.set_values(result.probability, result.threshold)
            if result.gated_down:
                self.gate_label.setText(GATING_MARK)
                self.gate_label.setToolTip(
                    f"Normal gating lowered this score from {result.ungated:.2f} to "
                    f"{result.probability:.2f} (more than half): the model also found the image "
                    "likely normal."
                )
            else:
                self.gate_label.setText("")
                self.gate_label.setToolTip("")
        tip = ""
        if result is not None:
            tip = f"{result.display_name}: threshold {result.threshold:.2f}"
            if result.scored:
                tip += f", probability {result.probability:.3f}"
        self.name_label.setToolTip(tip)
        self._restyle()

    def set_verdict(self, verdict: str | None) -> None:
        self.group.setExclusive(False)
        for v, b in self.buttons.items():
            b.setChecked(v == verdict)
        self.group.setExclusive(True)

    def verdict(self) -> str | None:
        for v, b in self.buttons.items():
            if b.isChecked():
                return v
        return None

    def is_highlighted(self) -> bool:
        return bool(self.result is not None and self.result.above)

    def set_current(self, current: bool) -> None:
        self._current = current
        self._restyle()

    def _restyle(self) -> None:
        style = ""
        if self.is_highlighted():
            style += ABOVE_STYLE
        if self._current:
            style += CURRENT_STYLE
        sheet = f"#findingRow {{{style}}}" if style else ""
        # Re-polishing a style sheet costs ~1 ms a row: only when it actually changes.
        if sheet != self._sheet:
            self._sheet = sheet
            self.setStyleSheet(sheet)
        bold = self.is_highlighted()
        if bold != self._bold:
            self._bold = bold
            font = self.name_label.font()
            font.setBold(bold)
            self.name_label.setFont(font)


class FindingsPanel(QWidget):
    """Findings of the current image, in two groups, with verdict buttons and a note.

    Signals
    -------
    findingSelected(str)
        The current finding changed (class name).
    verdictRequested(str, str)
        The reader asked for (finding, verdict) with a button or key.
    noteEdited(str)
        The image note was edited and confirmed (Enter or focus out).
    noteDone()
        Enter or Escape in the note: the keyboard goes back to reading (Escape also undoes the
        unsaved edit).
    agreeAllRequested()
        "Agree with all" was pressed.
    """

    findingSelected = Signal(str)
    verdictRequested = Signal(str, str)
    noteEdited = Signal(str)
    noteDone = Signal()
    agreeAllRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        from engine.classes import class_table

        super().__init__(parent)
        self._rows: dict[str, _FindingRow] = {}
        self._order: list[str] = []
        self._current: str | None = None
        self._last_note = ""

        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(2, 2, 2, 2)
        col.setSpacing(0)
        self.task1_header = QLabel("<b>In-distribution findings (30)</b>")
        self.task1_header.setToolTip(
            "Supervised ConvNeXtV2 ensemble with normal gating. "
            f"{GATING_MARK} marks a score that normal gating cut by more than half."
        )
        self.task2_header = QLabel("<b>Zero-shot findings (6)</b> - uncalibrated")
        self.task2_header.setObjectName("zeroShotHeader")
        self.task2_header.setToolTip(
            "Scored by a CLIP model against text prompts, never trained on these labels. "
            "The values are sigmoid(5 x cosine similarity): uncalibrated, compare them with "
            "their threshold, not with the supervised findings."
        )
        col.addWidget(self.task1_header)
        for info in class_table():
            if info.task == 2 and self.task2_header.parent() is not body:
                col.addSpacing(8)
                col.addWidget(self.task2_header)
            row = _FindingRow(info.name, info.display_name)
            row.clicked.connect(self._on_row_clicked)
            row.verdictClicked.connect(self._on_verdict_clicked)
            self._rows[info.name] = row
            self._order.append(info.name)
            col.addWidget(row)
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # Rows shrink their bars instead of scrolling sideways (a sideways scroll hides names).
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll = scroll

        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("Note for this image (Enter to save)")
        self.note_edit.editingFinished.connect(self._on_note_editing_finished)
        # After editingFinished has saved the note (queued), not before.
        self.note_edit.returnPressed.connect(lambda: QTimer.singleShot(0, self.noteDone.emit))
        self.note_edit.installEventFilter(self)
        self.agree_button = QPushButton("Agree with all")
        self.agree_button.setToolTip(
            "Mark every finding as the AI called it: present at or above threshold, absent below"
        )
        self.agree_button.clicked.connect(self.agreeAllRequested)
        self.title = QLabel("No image selected")
        self.title.setObjectName("findingsTitle")
        self.title.setWordWrap(True)
        # A warning about the image (a FOR PROCESSING image), hidden when there is none.
        self.notice = QLabel("")
        self.notice.setObjectName("findingsNotice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #b35c00; font-weight: bold;")
        self.notice.setVisible(False)
        # Which model set's thresholds are in force and where they came from.
        self.thresholds_line = QLabel("")
        self.thresholds_line.setObjectName("thresholdsSource")
        self.thresholds_line.setWordWrap(True)
        self.thresholds_line.setStyleSheet("color: #555;")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.notice)
        layout.addWidget(self.thresholds_line)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.note_edit)
        layout.addWidget(self.agree_button)
        # Which models make the scores; their model cards in the tooltip (set_model_line).
        self.model_line = QLabel("")
        self.model_line.setObjectName("modelLine")
        self.model_line.setWordWrap(True)
        self.model_line.setStyleSheet("color: #555;")
        layout.addWidget(self.model_line)
        self.set_results(None)

    # ------------------------------------------------------------------ public API
    def finding_names(self) -> list[str]:
        return list(self._order)

    def row(self, name: str) -> _FindingRow:
        return self._rows[name]

    def set_title(self, text: str) -> None:
        self.title.setText(text)

    def set_notice(self, text: str) -> None:
        """A warning line under the title ("" hides it)."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def set_threshold_source(self, text: str, tooltip: str = "") -> None:
        """The line saying which thresholds are in force ("" when nothing is scored)."""
        self.thresholds_line.setText(text)
        self.thresholds_line.setToolTip(tooltip)

    def set_results(self, results: list[FindingResult] | None) -> None:
        """Show one image's results (None: nothing scored / no image)."""
        by_name = {r.name: r for r in results or []}
        for name, row in self._rows.items():
            row.set_result(by_name.get(name))
        enabled = results is not None
        self.agree_button.setEnabled(enabled and any(r.scored for r in by_name.values()))
        for row in self._rows.values():
            for b in row.buttons.values():
                b.setEnabled(enabled)
        self.note_edit.setEnabled(enabled)
        if self._current is None and self._order:
            self.select_finding(self._order[0], emit=False)

    def set_verdicts(self, verdicts: dict[str, str]) -> None:
        for name, row in self._rows.items():
            row.set_verdict(verdicts.get(name))

    def set_verdict(self, finding: str, verdict: str | None) -> None:
        self._rows[finding].set_verdict(verdict)

    def set_model_line(self, text: str, tooltip: str = "") -> None:
        """The models line under the findings (``ui.model_facts.model_line`` makes both)."""
        self.model_line.setText(text)
        self.model_line.setToolTip(tooltip)

    def verdicts(self) -> dict[str, str]:
        return {n: v for n, r in self._rows.items() if (v := r.verdict()) is not None}

    def set_note(self, note: str) -> None:
        self._last_note = note or ""
        self.note_edit.setText(self._last_note)

    def note(self) -> str:
        return self.note_edit.text()

    def pending_note(self) -> str | None:
        """The note's text when it differs from the last saved one (typed, not confirmed)."""
        text = self.note_edit.text()
        return text if text != self._last_note else None

    def note_not_saved(self, stored: str) -> None:
        """The store refused the note: ``stored`` is what it holds, so the edit stays pending."""
        self._last_note = stored or ""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if (
            obj is self.note_edit
            and event.type() == QEvent.Type.KeyPress
            and event.key() == Qt.Key.Key_Escape
        ):
            self.note_edit.setText(self._last_note)  # undo the unsaved edit
            self.noteDone.emit()
            return True
        return super().eventFilter(obj, event)

    def current_finding(self) -> str | None:
        return self._current

    def select_finding(self, name: str, *, emit: bool = True) -> None:
        if name not in self._rows:
            raise KeyError(f"unknown finding {name!r}")
        if self._current is not None:
            self._rows[self._current].set_current(False)
        self._current = name
        row = self._rows[name]
        row.set_current(True)
        self._scroll.ensureWidgetVisible(row, 0, 20)
        self._scroll.horizontalScrollBar().setValue(0)
        if emit:
            self.findingSelected.emit(name)

    def next_finding(self) -> None:
        self._step(1)

    def previous_finding(self) -> None:
        self._step(-1)

    def request_verdict(self, verdict: str) -> None:
        """Ask for ``verdict`` on the current finding (what the verdict keys do)."""
        if self._current is not None and self._has_results():
            self.verdictRequested.emit(self._current, verdict)

    def highlighted(self) -> list[str]:
        """Names of the rows highlighted as at or above threshold."""
        return [n for n, r in self._rows.items() if r.is_highlighted()]

    def gated_markers(self) -> list[str]:
        """Names of the rows carrying the normal-gating marker."""
        return [n for n, r in self._rows.items() if r.gate_label.text()]

    # ------------------------------------------------------------------ slots
    def _has_results(self) -> bool:
        return self.note_edit.isEnabled()

    def _step(self, delta: int) -> None:
        if not self._order:
            return
        i = self._order.index(self._current) if self._current in self._order else -delta
        self.select_finding(self._order[(i + delta) % len(self._order)])

    def _on_row_clicked(self, name: str) -> None:
        self.select_finding(name)

    def _on_verdict_clicked(self, name: str, verdict: str) -> None:
        self.select_finding(name)
        self.verdictRequested.emit(name, verdict)

    def _on_note_editing_finished(self) -> None:
        text = self.note_edit.text()
        if text != self._last_note:
            self._last_note = text
            self.noteEdited.emit(text)


__all__ = [
    "FindingResult",
    "FindingsPanel",
    "ProbabilityBar",
    "image_title",
    "results_from_prediction",
]
