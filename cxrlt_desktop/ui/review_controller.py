"""The reader's work on the current image: the findings panel shows the session's current image
(scores, verdicts, note) and its verdicts and notes go to the store at once.

:class:`ReviewController` connects :class:`~cxrlt_desktop.ui.findings_panel.FindingsPanel`, the
:class:`~cxrlt_desktop.review.ReviewSession` and ``cxrlt_desktop.library.reviews``. A note typed
but not confirmed is saved on the image it was typed for when the session moves the note to
another image (``note_target_changed``); a store error is reported and nothing is lost from the
field.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QWidget

from cxrlt_desktop.library import reviews
from cxrlt_desktop.review import ReviewSession
from cxrlt_desktop.ui.findings_panel import FindingsPanel, image_title, results_from_prediction
from cxrlt_desktop.ui.store_access import ImageEntry, image_reviews


def reviewer_name(settings) -> str:
    """Who signs the verdicts: the settings' reviewer, else the login name, else "unknown"."""
    if settings.reviewer:
        return settings.reviewer
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def threshold_sources_tip(ts) -> str:
    """Tooltip of the thresholds line: each finding not at its default, with its source."""
    from engine.classes import DISPLAY_NAMES

    rows = [
        f"{DISPLAY_NAMES.get(name, name)}: {ts.values[name]:.2f} ({src})"
        for name, src in ts.sources.items()
        if src != "default"
    ]
    return "\n".join(rows) if rows else "Every threshold at its default (resources/classes.csv)"


class ReviewController(QObject):
    """Signals: ``verdictCommitted(image id, finding, verdict)``; ``changed()`` after any write
    (the worklist status follows); ``error(text)`` when the store refused a write."""

    verdictCommitted = Signal(int, str, str)
    changed = Signal()
    error = Signal(str)

    def __init__(
        self,
        store,
        session: ReviewSession,
        findings: FindingsPanel,
        *,
        reviewer: Callable[[], str],
        thresholds: Callable[[], dict[str, float]],
        overrides: Callable[[], dict[str, float] | None],
        keyboard_home: QWidget,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.session = session
        self.findings = findings
        self._reviewer = reviewer
        self._thresholds = thresholds  # all thresholds in force (defaults filled in)
        self._overrides = overrides  # the user's thresholds only (for agree-with-all)
        self._keyboard_home = keyboard_home  # gets the keys after the note when nothing else can
        self._focus_before_note: QWidget | None = None
        session.note_target_changed.connect(self._on_note_target_changed)
        findings.verdictRequested.connect(self.set_verdict)
        findings.noteEdited.connect(self._on_note_edited)
        findings.noteDone.connect(self._on_note_done)
        findings.agreeAllRequested.connect(self.agree_with_all)

    def show(self, entry: ImageEntry) -> None:
        """Scores, verdicts and note of an image (a note being typed for it stays)."""
        from cxrlt_desktop.library.thresholds import prediction_thresholds
        from cxrlt_desktop.library.triage import FOR_PROCESSING_NOTE, is_for_processing

        f = self.findings
        f.set_title(image_title(entry))
        from cxrlt_desktop.library.progressive import PROVISIONAL_NOTE, is_provisional_prediction

        notes = [FOR_PROCESSING_NOTE.capitalize()] if is_for_processing(entry.meta) else []
        if entry.prediction_id is not None:
            with self.store.session() as s, s.begin():
                if is_provisional_prediction(s, entry.prediction_id):
                    notes.append(PROVISIONAL_NOTE)  # the progressive policy's fast pass
        f.set_notice("\n".join(notes))
        if entry.probs is None:
            f.set_results(None)
            f.set_threshold_source("")
        else:
            # The thresholds of the prediction's model set (the settings' for what it has not
            # set), and where each came from.
            ts = prediction_thresholds(self.store, entry.prediction_id, self._overrides())
            f.set_results(
                results_from_prediction(
                    entry.probs, ts.values, entry.ungated, entry.attention is not None
                )
            )
            f.set_threshold_source(ts.describe(), threshold_sources_tip(ts))
        verdicts, note = image_reviews(self.store, entry.image_id)
        f.set_verdicts(verdicts)
        self.session.set_verdicts(entry.image_id, verdicts)
        if f.pending_note() is None:  # (new predictions never wipe a note being typed)
            f.set_note(note)

    def show_none(self) -> None:
        """A study without a usable image."""
        self.findings.set_note("")
        self.findings.set_results(None)
        self.findings.set_title("This study has no usable image")

    # ------------------------------------------------------------------ verdicts
    def set_verdict(self, finding: str, verdict: str) -> None:
        entry = self.session.current
        if entry is None:
            return
        try:
            reviews.set_verdict(
                self.store, entry.image_id, finding, verdict, reviewer=self._reviewer()
            )
        except Exception as exc:  # the verdict was not saved: say so, keep the old state
            self.error.emit(f"The verdict was not saved: {exc}")
            verdicts, _ = image_reviews(self.store, entry.image_id)
            self.findings.set_verdict(finding, verdicts.get(finding))
            return
        self.findings.set_verdict(finding, verdict)
        self.session.set_verdicts(entry.image_id, self.findings.verdicts())
        self.verdictCommitted.emit(entry.image_id, finding, verdict)
        self.changed.emit()

    def agree_with_all(self) -> None:
        """Every finding as the AI called it, keeping the verdicts already set."""
        entry = self.session.current
        if entry is None or entry.probs is None:
            return
        try:
            reviews.agree_with_all(
                self.store,
                entry.image_id,
                reviewer=self._reviewer(),
                thresholds=self._overrides() or None,
            )
        except Exception as exc:
            self.error.emit(f"'Agree with all' was not saved: {exc}")
            return
        verdicts, _ = image_reviews(self.store, entry.image_id)
        self.findings.set_verdicts(verdicts)
        self.session.set_verdicts(entry.image_id, verdicts)
        for finding, verdict in verdicts.items():
            self.verdictCommitted.emit(entry.image_id, finding, verdict)
        self.changed.emit()

    # ------------------------------------------------------------------ the note
    def commit_pending_note(self) -> None:
        """Save a note typed but not confirmed on the image it belongs to."""
        text = self.findings.pending_note()
        if text is not None and self.session.note_image_id is not None:
            self._save_note(self.session.note_image_id, text)

    def focus_note(self) -> None:
        focus = QApplication.focusWidget()
        if focus is not self.findings.note_edit:
            self._focus_before_note = focus
        self.findings.note_edit.setFocus()

    def _on_note_target_changed(self, old: int | None, _new: int | None) -> None:
        # PgDown while typing: the note belongs to the image it was typed for; save it there
        # before the field shows another image's note.
        text = self.findings.pending_note()
        if text is not None and old is not None:
            self._save_note(old, text)
        self.findings.set_note("")

    def _on_note_edited(self, note: str) -> None:
        if self.session.note_image_id is not None:
            self._save_note(self.session.note_image_id, note)

    def _save_note(self, image_id: int, note: str) -> None:
        try:
            reviews.set_image_note(self.store, image_id, note, reviewer=self._reviewer())
        except Exception as exc:
            self.error.emit(f"The note was not saved: {exc}")
            if image_id == self.session.note_image_id:
                _, stored = image_reviews(self.store, image_id)
                self.findings.note_not_saved(stored)  # still pending: saved on the next try
            return
        if image_id == self.session.note_image_id:
            self.findings.set_note(note)

    def _on_note_done(self) -> None:
        """Enter or Escape in the note: give the keyboard back, so verdict keys work again."""
        back, self._focus_before_note = self._focus_before_note, None
        try:
            usable = back is not None and back.isVisible() and back is not self.findings.note_edit
        except RuntimeError:  # the widget was deleted
            usable = False
        (back if usable else self._keyboard_home).setFocus()


__all__ = ["ReviewController", "reviewer_name"]
