"""Input helpers for the GUI tests: real QMouseEvents sent to a pyqtgraph view's viewport."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication


def _mouse(kind, vp, pos: QPoint, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier):
    p = QPointF(pos)
    return QMouseEvent(kind, p, QPointF(vp.mapToGlobal(pos)), button, buttons, modifiers)


def drag(view, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton, modifiers=Qt.KeyboardModifier.NoModifier):
    """Press at ``start``, move to ``end`` in two steps, release: a real mouse drag."""
    vp = view.viewport()
    QApplication.sendEvent(vp, _mouse(QEvent.Type.MouseButtonPress, vp, start, button, button, modifiers))
    mid = QPoint((start.x() + end.x()) // 2, (start.y() + end.y()) // 2)
    for p in (mid, end):
        QApplication.sendEvent(
            vp, _mouse(QEvent.Type.MouseMove, vp, p, Qt.MouseButton.NoButton, button, modifiers)
        )
    QApplication.sendEvent(
        vp, _mouse(QEvent.Type.MouseButtonRelease, vp, end, button, Qt.MouseButton.NoButton, modifiers)
    )


def move(view, pos: QPoint):
    vp = view.viewport()
    QApplication.sendEvent(
        vp, _mouse(QEvent.Type.MouseMove, vp, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    )


def wheel(view, pos: QPoint, steps: int = 1):
    """Scroll the wheel ``steps`` notches (positive: away from the user, zoom in)."""
    vp = view.viewport()
    ev = QWheelEvent(
        QPointF(pos),
        QPointF(vp.mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, ev)
