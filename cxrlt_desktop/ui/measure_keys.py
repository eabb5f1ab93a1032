"""The keys of a mode: while it is on, its actions are enabled and take their keys from the
ordinary actions (the arrows move a selected measurement point instead of changing the image
or the finding); when it ends, those actions get their keys back.

Which actions belong to a mode is declared in :mod:`.shortcuts` (``ActionSpec.mode``); the
keys are read from the QActions when the mode starts, so keys edited in Settings count.
"""

from __future__ import annotations

from PySide6.QtGui import QAction

from cxrlt_desktop.ui.shortcuts import ALL_ACTIONS


class ModeKeys:
    """Switches the actions of ``mode`` on and off in ``actions`` (by id)."""

    def __init__(self, actions: dict[str, QAction], mode: str) -> None:
        self._actions = actions
        self._mode_ids = [a.id for a in ALL_ACTIONS if a.mode == mode and a.id in actions]
        self._yielded: list[QAction] = []  # ordinary actions disabled while the mode is on
        self.on = False
        self.set_on(False)

    def set_on(self, on: bool) -> None:
        for act in self._yielded:
            act.setEnabled(True)
        self._yielded = []
        self.on = bool(on)
        for i in self._mode_ids:
            self._actions[i].setEnabled(self.on)
        if not self.on:
            return
        keys = {self._actions[i].shortcut().toString() for i in self._mode_ids} - {""}
        for aid, act in self._actions.items():
            if aid in self._mode_ids or not act.isEnabled():
                continue
            if act.shortcut().toString() in keys:
                act.setEnabled(False)
                self._yielded.append(act)


__all__ = ["ModeKeys"]
