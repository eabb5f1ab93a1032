"""The Problems dock: files that could not be used, scored or displayed, with the step and the
reason, each listed once (recorded ones from the store at start, new ones as they happen)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from cxrlt_desktop.ui.workers import Problem


class ProblemsDock(QDockWidget):
    """A dock titled "Problems (n)" over a File / Step / Reason table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Problems", parent)
        self.setObjectName("problemsDock")
        self.table = QTableWidget(0, 3)
        self.table.setObjectName("problems")
        self.table.setHorizontalHeaderLabels(["File", "Step", "Reason"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 360)
        self.table.setColumnWidth(1, 50)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWidget(self.table)
        self._keys: set[tuple[str, str]] = set()

    def add(self, problem: Problem) -> bool:
        """List a problem unless the same file already has the same reason; True when added."""
        key = (problem.path, problem.reason)
        if key in self._keys:
            return False
        self._keys.add(key)
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, text in enumerate((problem.path, problem.phase, problem.reason)):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.table.setItem(r, c, item)
        self.setWindowTitle(f"Problems ({self.table.rowCount()})")
        return True

    def load_recorded(self, store) -> None:
        """The problems the store recorded in earlier sessions (raises on a store error)."""
        from cxrlt_desktop.ui.store_access import recorded_problems

        for path, reason, phase in recorded_problems(store):
            self.add(Problem(path, reason, phase))

    def rows(self) -> list[tuple[str, str, str]]:
        """(file, step, reason) rows."""
        return [
            tuple(self.table.item(r, c).text() for c in range(3))
            for r in range(self.table.rowCount())
        ]


__all__ = ["ProblemsDock"]
