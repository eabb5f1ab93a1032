"""The worklist panel: the filters (status, finding, free text, show names) over the table of
studies ordered by rare-finding score (:class:`~cxrlt_desktop.ui.worklist_model.WorklistModel`).

It reports the study the reader moves to (``studyActivated``) and selects rows on request
(a study by UID, fetching pages until it is loaded; the next / previous study of the list);
which study is open is the review session's business.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.review import study_after
from cxrlt_desktop.ui.worklist_model import STUDY_UID_ROLE, WorklistModel

COLUMN_WIDTHS = (60, 92, 78, 178, 120, 48, 110)  # status: room for "being read by"


class WorklistPanel(QWidget):
    """Signals: ``studyActivated(uid)`` when the current row moves to a study,
    ``showPhiToggled(bool)`` for *Show names*."""

    studyActivated = Signal(str)
    showPhiToggled = Signal(bool)

    def __init__(self, store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._build_filters()
        self.model = WorklistModel(store, parent=self)
        self.table = QTableView()
        self.table.setObjectName("worklist")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSortIndicator(0, Qt.SortOrder.DescendingOrder)
        self.table.setSortingEnabled(True)
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate(COLUMN_WIDTHS):
            self.table.setColumnWidth(col, width)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row_changed)

        filters = QHBoxLayout()
        filters.addWidget(self.status_filter)
        filters.addWidget(self.finding_filter, 1)
        filters2 = QHBoxLayout()
        filters2.addWidget(self.text_filter, 1)
        filters2.addWidget(self.show_phi_box)
        lv = QVBoxLayout(self)
        lv.setContentsMargins(2, 2, 2, 2)
        lv.addWidget(QLabel("<b>Worklist</b> (by rare-finding score)"))
        lv.addLayout(filters)
        lv.addLayout(filters2)
        lv.addWidget(self.table, 1)

    def _build_filters(self) -> None:
        from engine.classes import class_table

        self.status_filter = QComboBox()
        for label, value in (
            ("All studies", "all"),
            ("Unreviewed", "unreviewed"),
            ("Reviewed", "reviewed"),
        ):
            self.status_filter.addItem(label, value)
        self.finding_filter = QComboBox()
        self.finding_filter.addItem("Any finding", "")
        for info in class_table():
            if info.name != "Normal":
                self.finding_filter.addItem(info.display_name, info.name)
        self.finding_filter.setToolTip("Studies with this finding at or above its threshold")
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("Search patient, description, date")
        self.text_filter.setClearButtonEnabled(True)
        self.show_phi_box = QCheckBox("Show names")
        self.show_phi_box.setToolTip("Show patient names and IDs instead of pseudonyms")
        self._text_timer = QTimer(self)
        self._text_timer.setSingleShot(True)
        self._text_timer.setInterval(250)
        self._text_timer.timeout.connect(self._on_filters_changed)
        self.status_filter.currentIndexChanged.connect(self._on_filters_changed)
        self.finding_filter.currentIndexChanged.connect(self._on_filters_changed)
        self.text_filter.textChanged.connect(lambda _t: self._text_timer.start())
        self.show_phi_box.toggled.connect(self._on_show_phi_toggled)

    # ------------------------------------------------------------------ selection
    def select_row(self, row: int) -> None:
        if not (0 <= row < self.model.rowCount()):
            return
        idx = self.model.index(row, 0)
        sel = self.table.selectionModel()
        sel.setCurrentIndex(idx, sel.SelectionFlag.ClearAndSelect | sel.SelectionFlag.Rows)
        self.table.scrollTo(idx)

    def select_study(self, study_uid: str) -> bool:
        """Select a study by UID, fetching pages until it is loaded; False when not listed."""
        row = self.model.row_for_uid(study_uid)
        while row < 0 and self.model.canFetchMore():
            self.model.fetchMore()
            row = self.model.row_for_uid(study_uid)
        if row < 0:
            return False
        self.select_row(row)
        return True

    def step(self, delta: int) -> None:
        """Select the study ``delta`` rows from the current one (PgDown / PgUp); a page more is
        fetched when it is past the loaded rows; nothing past either end."""
        order = self.loaded_order(delta)
        uid = study_after(order, self.current_uid(), delta)
        if uid is not None:
            self.select_row(order.index(uid))

    def current_uid(self) -> str | None:
        cur = self.table.currentIndex()
        return self.model.study_uid(cur.row()) if cur.isValid() else None

    def next_uid(self) -> str | None:
        """The loaded study below the current one (what PgDown opens), without fetching."""
        cur = self.table.currentIndex()
        return self.model.study_uid(cur.row() + 1) if cur.isValid() else None

    def loaded_order(self, delta: int = 0) -> list[str]:
        """The UIDs of the loaded rows, in order; a page more first when the current row plus
        ``delta`` is past the loaded rows."""
        cur = self.table.currentIndex()
        row = cur.row() if cur.isValid() else -1
        target = row + delta if row >= 0 else 0
        if target >= self.model.rowCount() and self.model.canFetchMore():
            self.model.fetchMore()
        return [r.study_uid for r in self.model.rows()]

    def study_text(self, study_uid: str) -> str:
        """Patient, date and description of a listed study, for the image header."""
        from cxrlt_desktop.ui.worklist_model import format_date

        row = self.model.row_for_uid(study_uid)
        info = self.model.row_data(row) if row >= 0 else None
        if info is None:
            return ""
        parts = [str(info.patient or ""), format_date(info.study_date), str(info.description or "")]
        return "  \u00b7  ".join(p for p in parts if p)

    # ------------------------------------------------------------------ slots
    def _on_current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            uid = current.data(STUDY_UID_ROLE)
            if uid:
                self.studyActivated.emit(uid)

    def _on_filters_changed(self, *_args) -> None:
        self.model.set_filters(
            status=self.status_filter.currentData(),
            finding=self.finding_filter.currentData() or "",
            text=self.text_filter.text(),
        )

    def _on_show_phi_toggled(self, checked: bool) -> None:
        self.model.set_filters(show_phi=checked)
        self.showPhiToggled.emit(checked)


__all__ = ["WorklistPanel"]
