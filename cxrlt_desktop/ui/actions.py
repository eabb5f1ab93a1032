"""The window's QActions, menus and image tool row, built from the tables in :mod:`.shortcuts`.

:func:`build_actions` makes one QAction per :class:`~cxrlt_desktop.ui.shortcuts.ActionSpec`
(named ``action_<id>``, its handler looked up on the window by dotted path),
:func:`build_menus` fills the menu bar from :data:`~cxrlt_desktop.ui.shortcuts.MENUS`, and
:func:`apply_keymap` sets the editable keys. Adding an action is one declaration in
:mod:`.shortcuts`; nothing here changes.
"""

from __future__ import annotations

from operator import attrgetter

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow

from cxrlt_desktop.ui.shortcuts import ACTIONS, ALL_ACTIONS, MENUS


def build_actions(window: QMainWindow) -> dict[str, QAction]:
    """One QAction per declared action, triggering ``window.<handler>(*args)``; by id.

    Actions with an editable key are added to the window, so that their shortcut works
    wherever the focus is in it. Actions of a mode start disabled.
    """
    actions: dict[str, QAction] = {}
    for spec in ALL_ACTIONS:
        act = QAction(spec.toolbar or spec.text, window)
        act.setObjectName(f"action_{spec.id}")
        handler = attrgetter(spec.handler)(window)
        act.triggered.connect(lambda _=False, h=handler, a=spec.args: h(*a))
        if spec.standard_key:
            act.setShortcut(getattr(QKeySequence.StandardKey, spec.standard_key))
        act.setEnabled(not spec.mode)  # an action of a mode waits for the mode (.measure_keys)
        if spec.default:
            window.addAction(act)
        actions[spec.id] = act
    return actions


def build_menus(window: QMainWindow, actions: dict[str, QAction]) -> None:
    """The menu bar from :data:`MENUS` (``"dock:NAME"``: the show / hide action of the window's
    dock attribute ``NAME``)."""
    for title, items in MENUS.items():
        menu = window.menuBar().addMenu(title)
        for item in items:
            if item == "-":
                menu.addSeparator()
            elif item.startswith("dock:"):
                menu.addAction(getattr(window, item.removeprefix("dock:")).toggleViewAction())
            else:
                menu.addAction(actions[item])


def apply_keymap(actions: dict[str, QAction], keymap: dict[str, str]) -> None:
    """Set the keys of the actions with an editable key (a merged key map: every id present)."""
    for spec in ACTIONS:
        act = actions[spec.id]
        act.setShortcut(QKeySequence(keymap[spec.id]))
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)


__all__ = ["apply_keymap", "build_actions", "build_menus"]
