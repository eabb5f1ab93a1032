"""The worklist table model: studies from ``cxrlt_desktop.library.worklist.query_worklist``, lazily.

Rows are fetched a page at a time (``canFetchMore``/``fetchMore``), filtered at query level
(status, finding, free text) and ordered by the rare-finding score as the query returns them;
sorting by another column sorts in memory after loading every matching row.

:meth:`WorklistModel.refresh` re-runs the query while scores stream in and updates rows *by
study UID*: rows that moved are moved with ``layoutChanged`` and the persistent indexes (hence
the view's selection and current index) follow their study, so the reader's selection never
jumps to another study. Other workstations' "being read by NAME" marks (:meth:`set_readers`)
follow the study's status; the row is tinted, its patient cell carries a dot, and both cells
say who, where and since when as their tool tip.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor

from cxrlt_desktop.library import WorklistRow
from cxrlt_desktop.ui.background import Lane

PAGE_SIZE = 200
ASYNC_ROWS = 2 * PAGE_SIZE  # refreshes of more rows than this query in the background
ALL_ROWS = 10_000_000  # "no limit" for a query that must return every matching study

PROVISIONAL_NOTE = (
    "Provisional: a fast-pass score (in italics); the paper method's result replaces it"
)
COLUMNS = ("priority", "patient", "study_date", "top_findings", "status", "images", "description")
HEADERS = {
    "priority": "Priority",
    "patient": "Patient",
    "study_date": "Date",
    "description": "Description",
    "images": "Images",
    "top_findings": "Top findings",
    "status": "Status",
}
FLAG = "\u2691"  # a flag glyph
READING_COLOR = "#1c5fb8"  # "being read by" on another workstation: the mark's colour
READING_TINT = "#e4eefb"  # ... and its row's background
STUDY_UID_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2


def _finding_items(row: WorklistRow) -> list[tuple[str, float, float]]:
    out = []
    for f in row.top_findings or []:
        name = f.get("finding")
        p = f.get("probability")
        t = f.get("threshold", 0.5)
        if name is None or p is None:
            continue
        out.append((str(name), float(p), float(t if t is not None else 0.5)))
    return out


_uid_of = attrgetter("study_uid")


def _uids(rows: list[WorklistRow]) -> list[str]:
    return list(map(_uid_of, rows))


def _score_key(r: WorklistRow) -> float:
    s = r.rare_score
    return -1.0 if s is None or s != s else s  # s != s: NaN


def _server_key(r: WorklistRow) -> tuple:
    return (_score_key(r), r.study_date or "", r.study_id)


def _fast_key(col: str):
    """Attribute-access sort keys (the 30,000-row sort budget is ~100 ms)."""
    if col == "priority":
        return _score_key
    if col == "images":
        return lambda r: r.n_images or 0
    if col == "top_findings":
        return lambda r: max(
            (f.get("probability") or 0.0 for f in (r.top_findings or [])), default=-1.0
        )
    if col in ("study_date", "status"):
        getter = attrgetter(col)
        return lambda r: getter(r) or ""
    if col in ("patient", "description"):
        getter = attrgetter(col)
        return lambda r: (getter(r) or "").lower()
    return None


_ICON: list = []


def _reading_icon():  # noqa: ANN202 - QIcon, made once the application exists
    """A small filled circle in :data:`READING_COLOR`: this study is open elsewhere."""
    if not _ICON:
        from PySide6.QtGui import QIcon, QPainter, QPixmap

        pm = QPixmap(10, 10)
        pm.fill(QColor(0, 0, 0, 0))
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setBrush(QColor(READING_COLOR))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawEllipse(1, 1, 8, 8)
        p.end()
        _ICON.append(QIcon(pm))
    return _ICON[0]


def is_flagged(row: WorklistRow) -> bool:
    """A study is flagged when any of its findings is at or above its operating threshold."""
    if (row.n_above or 0) > 0:
        return True
    score = row.rare_score
    if score is not None and not math.isnan(score) and score >= 1.0:
        return True
    return any(p >= t for _, p, t in _finding_items(row))


def format_date(value: Any) -> str:
    s = "" if value is None else str(value)
    if len(s) == 8 and s.isdigit():
        return f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return s


class WorklistModel(QAbstractTableModel):
    """Lazy, sortable, filterable study list.

    Parameters
    ----------
    store
        The open store (``cxrlt_desktop.store.open_store``).
    query
        The query function; ``cxrlt_desktop.library.worklist.query_worklist`` by default (tests and the
        benchmark may pass another with the same keywords).

    Signals
    -------
    refreshed()
        Emitted after every applied refresh or filter change.
    refreshFailed(str)
        A background refresh query failed (the message).
    """

    refreshed = Signal()
    refreshFailed = Signal(str)

    def __init__(self, store, query=None, parent=None) -> None:
        super().__init__(parent)
        if query is None:
            from cxrlt_desktop.library.worklist import query_worklist as query
        self._store = store
        self._query = query
        self._rows: list[WorklistRow] = []
        self._exhausted = False
        self._status = "all"
        self._finding: str | None = None
        self._text: str | None = None
        self._show_phi = False
        self._sort_column = 0
        self._sort_order = Qt.SortOrder.DescendingOrder
        self._generation = 0  # bumped by every synchronous refresh / filter change
        self._lane = Lane("worklist", parent=self)
        self._inflight = False
        self._inflight_all = False  # the query in flight loads every row (a column sort)
        self._again = False
        # The background query's outcome, (generation, rows, window, kept) or its exception,
        # until its worker's ``finished`` applies it.
        self._async_outcome: tuple[int, list[WorklistRow], int, set[str]] | Exception | None = None
        # Selected studies that no longer match the filters, kept until the user moves away.
        self._kept: set[str] = set()
        # "being read by" marks of other workstations: {study id: (text, tool tip)}.
        self._readers: dict[int, tuple[str, str]] = {}

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[COLUMNS[section]]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            if COLUMNS[section] == "priority":
                return (
                    "Rare-finding score: max over rare findings of probability / threshold. "
                    f"{FLAG} = a finding at or above its threshold."
                )
        return None

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008, N802
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:  # noqa: B008, N802
        if parent.isValid() or self._exhausted:
            return
        # Kept rows (see _query_with_pinned) are not in the filtered query's pages.
        page = self._run_query(limit=PAGE_SIZE, offset=len(self._rows) - len(self._kept))
        known = {r.study_uid for r in self._rows}
        # Offsets shift while scores stream in: never show a study twice.
        page_new = [r for r in page if r.study_uid not in known]
        if len(page) < PAGE_SIZE:
            self._exhausted = True
        if self._inflight and not self._inflight_all:
            # A background refresh planned for fewer rows would drop this page: redo it. (A
            # load-everything query holds the page already: its result stays good.)
            self._generation += 1
            self._again = True
        if page_new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(page_new) - 1)
            self._rows.extend(page_new)
            self.endInsertRows()

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        row = self._rows[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == "status" and row.study_id in self._readers:
                return f"{self._display(row, col)}, {self._readers[row.study_id][0]}"
            return self._display(row, col)
        if role == SORT_ROLE:
            return self._sort_key(row, col)
        if role == STUDY_UID_ROLE:
            return row.study_uid
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == "top_findings":
                return (
                    "\n".join(
                        f"{n}: {p:.3f} (threshold {t:.2f}){' - above' if p >= t else ''}"
                        for n, p, t in _finding_items(row)
                    )
                    or None
                )
            if col == "priority" and getattr(row, "provisional", False):
                # the progressive policy's fast pass: the paper pass replaces it
                return PROVISIONAL_NOTE
            if col == "priority" and is_flagged(row):
                return "At least one finding at or above its operating threshold"
            if col in ("status", "patient") and row.study_id in self._readers:
                return self._readers[row.study_id][1]
            if col == "images" and getattr(row, "for_processing", False):
                from cxrlt_desktop.library.triage import FOR_PROCESSING_NOTE

                return FOR_PROCESSING_NOTE[0].upper() + FOR_PROCESSING_NOTE[1:]
            return None
        if row.study_id in self._readers:  # being read on another workstation
            if role == Qt.ItemDataRole.BackgroundRole:
                return QBrush(QColor(READING_TINT))
            if role == Qt.ItemDataRole.DecorationRole and col == "patient":
                return _reading_icon()
            if role == Qt.ItemDataRole.ForegroundRole and col == "status":
                return QBrush(QColor(READING_COLOR))
        if role == Qt.ItemDataRole.ForegroundRole and col == "priority" and is_flagged(row):
            return QBrush(QColor("#c92a2a"))
        provisional = getattr(row, "provisional", False) and col in ("priority", "top_findings")
        if role == Qt.ItemDataRole.FontRole and (
            provisional or (is_flagged(row) and col == "priority")
        ):
            from PySide6.QtGui import QFont

            f = QFont()
            f.setBold(is_flagged(row) and col == "priority")
            f.setItalic(provisional)  # a provisional (fast-pass) score is shown in italics
            return f
        if role == Qt.ItemDataRole.TextAlignmentRole and col in ("priority", "images"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by a column. Any column but the default priority order loads every row first."""
        self._sort_column = column
        self._sort_order = order
        if self._is_server_order():
            if self._exhausted and self._rows:
                # Every matching row is loaded: the query's order, derived in memory.
                self._replace_rows(self._server_sorted(self._rows))
            else:
                self.refresh()
            return
        if not self._exhausted:
            # Sorting needs every matching row. A short list loads at once; a long one loads in
            # the background and is sorted when it arrives (``refreshed`` follows).
            probe = self._run_query(limit=ASYNC_ROWS + 1, offset=0)
            if len(probe) > ASYNC_ROWS:
                self.refresh_async(load_all=True)
                return
            got = {r.study_uid for r in probe}
            kept = [r for r in self._rows if r.study_uid in self._kept - got]
            self._kept = {r.study_uid for r in kept}
            self._replace_rows(probe + kept)
            self._exhausted = True
        self._replace_rows(self._sorted(self._rows))
        self.refreshed.emit()

    # ------------------------------------------------------------------ app API
    def rows(self) -> list[WorklistRow]:
        return list(self._rows)

    def row_for_uid(self, study_uid: str) -> int:
        for i, r in enumerate(self._rows):
            if r.study_uid == study_uid:
                return i
        return -1

    def study_uid(self, row: int) -> str | None:
        if 0 <= row < len(self._rows):
            return self._rows[row].study_uid
        return None

    def row_data(self, row: int) -> WorklistRow:
        return self._rows[row]

    def set_readers(self, readers: dict[int, tuple[str, str]]) -> None:
        """Other workstations' "being read by" marks: {study id: (text, tool tip)}, shown
        after the study's status."""
        if readers == self._readers:
            return
        self._readers = dict(readers)
        if self._rows:
            col = COLUMNS.index("status")
            self.dataChanged.emit(self.index(0, col), self.index(len(self._rows) - 1, col))

    def reader_text(self, row: int) -> str:
        """The "being read by" mark of a row ("" for none)."""
        study = self._rows[row].study_id if 0 <= row < len(self._rows) else None
        return self._readers.get(study, ("", ""))[0]

    def set_filters(
        self,
        *,
        status: str | None = None,
        finding: str | None = None,
        text: str | None = None,
        show_phi: bool | None = None,
    ) -> None:
        """Change the query's filters (None keeps a filter as it is; "" clears text/finding)."""
        if status is not None:
            self._status = status or "all"
        if finding is not None:
            self._finding = finding or None
        if text is not None:
            self._text = text.strip() or None
        if show_phi is not None:
            self._show_phi = bool(show_phi)
        self._exhausted = False
        self.refresh(reset_paging=True)

    def filters(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "finding": self._finding,
            "text": self._text,
            "show_phi": self._show_phi,
        }

    def refresh(self, *, reset_paging: bool = False) -> None:
        """Re-run the query for the rows already loaded (at least one page), keyed by study UID."""
        self._generation += 1
        want, pinned = self._refresh_plan(reset_paging)
        rows, want, kept = self._query_with_pinned(
            want, pinned, self._query_args(), keep_pinned=not reset_paging
        )
        self._apply_refresh(rows, want, reset_paging, kept)

    def refresh_async(self, *, load_all: bool = False) -> None:
        """Like :meth:`refresh`, but a big query (every row loaded) runs in the ``worklist`` lane.

        Small refreshes (a few pages) stay synchronous: they take milliseconds and keep tests
        deterministic. Results of a query overtaken by a filter change or by pages loaded
        while it ran are dropped, and the refresh runs again. ``load_all`` fetches every
        matching row (for a sort by another column).
        """
        if not load_all and len(self._rows) <= ASYNC_ROWS:
            self.refresh()
            return
        if self._inflight:
            self._again = True
            return
        self._inflight = True
        self._inflight_all = load_all
        want, pinned = self._refresh_plan(False)
        if load_all:
            want = ALL_ROWS
        self._async_outcome = None
        self._lane.run(
            self._background_query,
            self._generation,
            want,
            pinned,
            self._query_args(),
            connect={
                "returned": self._on_query_returned,
                "errored": self._on_query_failed,
                "finished": self._on_query_finished,
            },
        )

    def shutdown(self) -> None:
        """Wait for a background query (at exit)."""
        self._lane.wait()

    def _background_query(
        self, gen: int, want: int, pinned: set[str], args: dict[str, Any]
    ) -> tuple[int, list[WorklistRow], int, set[str]]:
        # Runs in the lane: reads only its arguments, the store and the query function.
        rows, want, kept = self._query_with_pinned(want, pinned, args, keep_pinned=True)
        return gen, rows, want, kept

    @Slot(object)
    def _on_query_returned(self, outcome: tuple[int, list[WorklistRow], int, set[str]]) -> None:
        self._async_outcome = outcome

    @Slot(object)
    def _on_query_failed(self, exc: Exception) -> None:
        self._async_outcome = exc

    @Slot()
    def _on_query_finished(self) -> None:
        # After ``returned`` or ``errored``; neither came when the worker was told to quit.
        outcome, self._async_outcome = self._async_outcome, None
        self._inflight = self._inflight_all = False
        if isinstance(outcome, Exception):
            self.refreshFailed.emit(str(outcome))
        elif outcome is not None and outcome[0] == self._generation:
            self._apply_refresh(outcome[1], outcome[2], False, outcome[3])
        if self._again:
            self._again = False
            self.refresh_async()

    def _refresh_plan(self, reset_paging: bool) -> tuple[int, set[str]]:
        want = PAGE_SIZE if reset_paging else max(len(self._rows), PAGE_SIZE)
        if self._exhausted and not reset_paging:
            want = ALL_ROWS
        return want, self._pinned_uids()

    def _query_args(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "finding": self._finding,
            "text": self._text,
            "show_phi": self._show_phi,
        }

    def _query_with_pinned(
        self, want: int, pinned: set[str], args: dict[str, Any], *, keep_pinned: bool = False
    ) -> tuple[list[WorklistRow], int, set[str]]:
        """The refresh query; returns (rows, window size, UIDs of kept rows)."""
        rows = list(self._query(self._store, limit=want, offset=0, **args))
        # A selected study that slid below the loaded window must stay loaded (and selected):
        # widen the window until it is back or the list is exhausted. Only for studies still
        # in the filter: widening for one that left it would load the whole list.
        outside = pinned - {r.study_uid for r in rows}
        if outside and len(rows) >= want:
            found = self._query(
                self._store, limit=len(outside), offset=0, **args, study_uids=sorted(outside)
            )
            in_filter = {r.study_uid for r in found}
            while in_filter - {r.study_uid for r in rows} and len(rows) >= want:
                want *= 2
                rows = list(self._query(self._store, limit=want, offset=0, **args))
        lost = pinned - {r.study_uid for r in rows}
        if not (keep_pinned and lost):
            return rows, want, set()
        # The selected study left the filter (a verdict made it "reviewed" under the Unreviewed
        # filter, new scores moved its findings): keep its row until the user moves away.
        # Dropping it would move the current row to another study, and the next verdict key
        # would land on that study's image.
        extra = list(
            self._query(
                self._store,
                limit=len(lost),
                offset=0,
                status="all",
                finding=None,
                text=None,
                show_phi=args["show_phi"],
                study_uids=sorted(lost),
            )
        )
        return self._server_sorted(rows + extra), want, {r.study_uid for r in extra}

    def _apply_refresh(
        self, rows: list[WorklistRow], want: int, reset_paging: bool, kept=()
    ) -> None:
        if reset_paging or len(rows) - len(kept) < want:
            self._exhausted = len(rows) - len(kept) < want
        self._kept = set(kept)
        self._replace_rows(self._sorted(rows))
        self.refreshed.emit()

    # ------------------------------------------------------------------ internals
    def _pinned_uids(self) -> set[str]:
        """Studies the views hold persistent indexes on (selection, current row)."""
        out = set()
        for idx in self.persistentIndexList():
            if 0 <= idx.row() < len(self._rows):
                out.add(self._rows[idx.row()].study_uid)
        return out

    def _is_server_order(self) -> bool:
        return self._sort_column == 0 and self._sort_order == Qt.SortOrder.DescendingOrder

    def _run_query(self, *, limit: int, offset: int) -> list[WorklistRow]:
        return list(
            self._query(
                self._store,
                limit=limit,
                offset=offset,
                status=self._status,
                finding=self._finding,
                text=self._text,
                show_phi=self._show_phi,
            )
        )

    def _sorted(self, rows: list[WorklistRow]) -> list[WorklistRow]:
        if self._is_server_order():
            return list(rows)
        col = COLUMNS[self._sort_column]
        reverse = self._sort_order == Qt.SortOrder.DescendingOrder
        keyf = _fast_key(col)
        if keyf is None:
            keys = [self._sort_key(r, col) for r in rows]
            order = sorted(range(len(rows)), key=keys.__getitem__, reverse=reverse)
            return [rows[i] for i in order]
        # Python's sort is stable (also with reverse): ties keep the query's priority order.
        return sorted(rows, key=keyf, reverse=reverse)

    @staticmethod
    def _server_sorted(rows: list[WorklistRow]) -> list[WorklistRow]:
        """The query's order: priority, study date, id, all descending (no date sorts last)."""
        return sorted(rows, key=_server_key, reverse=True)

    @staticmethod
    def _sort_key(row: WorklistRow, col: str):
        if col == "priority":
            s = row.rare_score
            return -1.0 if s is None or (isinstance(s, float) and math.isnan(s)) else float(s)
        if col == "images":
            return int(row.n_images or 0)
        if col == "top_findings":
            items = _finding_items(row)
            return max((p for _, p, _ in items), default=-1.0)
        value = getattr(row, col)
        return "" if value is None else str(value).lower()

    @staticmethod
    def _display(row: WorklistRow, col: str) -> str:
        if col == "priority":
            s = row.rare_score
            text = "-" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s:.2f}"
            return f"{FLAG} {text}" if is_flagged(row) else text
        if col == "patient":
            return str(row.patient or "")
        if col == "study_date":
            return format_date(row.study_date)
        if col == "description":
            return str(row.description or "")
        if col == "images":
            n = int(row.n_images or 0)
            scored = int(row.n_scored or 0)
            failed = int(row.n_failed or 0)
            text = str(n) if scored >= n else f"{scored}/{n}"
            text = f"{text} ({failed} failed)" if failed else text
            # FOR PROCESSING images: scored, but not what the models were trained on
            return f"{text}, for processing" if getattr(row, "for_processing", False) else text
        if col == "top_findings":
            from engine.classes import DISPLAY_NAMES

            items = _finding_items(row)[:3]
            return ", ".join(f"{DISPLAY_NAMES.get(n, n)} {p:.2f}" for n, p, _ in items)
        if col == "status":
            return str(row.status or "")
        return ""

    def _replace_rows(self, new_rows: list[WorklistRow]) -> None:
        """Swap in ``new_rows`` keeping every persistent index on its study."""
        old_keys = _uids(self._rows)
        new_keys = _uids(new_rows)
        if old_keys == new_keys:
            self._rows = list(new_rows)
            if self._rows:
                self.dataChanged.emit(
                    self.index(0, 0), self.index(len(self._rows) - 1, len(COLUMNS) - 1)
                )
            return
        n_old, n_new = len(old_keys), len(new_keys)
        if n_new > n_old:
            # Grow first (rows appended at the end touch no persistent index) ...
            self.beginInsertRows(QModelIndex(), n_old, n_new - 1)
            self._rows = self._rows + list(new_rows[n_old:])
            self.endInsertRows()
            current_keys = old_keys + new_keys[n_old:]
            staged, staged_keys = list(new_rows), new_keys
        else:
            # ... or park the studies that left at the end, to remove them after the move.
            keep = set(new_keys)
            gone = [(k, r) for k, r in zip(old_keys, self._rows, strict=True) if k not in keep]
            current_keys = old_keys
            staged = list(new_rows) + [r for _, r in gone]
            staged_keys = new_keys + [k for k, _ in gone]
        staged_pos = {k: i for i, k in enumerate(staged_keys)}

        self.layoutAboutToBeChanged.emit()
        old_persistent = self.persistentIndexList()
        new_persistent = []
        for idx in old_persistent:
            row = idx.row()
            j = staged_pos.get(current_keys[row]) if 0 <= row < len(current_keys) else None
            new_persistent.append(self.index(j, idx.column()) if j is not None else QModelIndex())
        self._rows = staged
        self.changePersistentIndexList(old_persistent, new_persistent)
        self.layoutChanged.emit()

        if len(self._rows) > n_new:
            self.beginRemoveRows(QModelIndex(), n_new, len(self._rows) - 1)
            self._rows = self._rows[:n_new]
            self.endRemoveRows()


__all__ = ["WorklistModel", "COLUMNS", "STUDY_UID_ROLE", "is_flagged", "PAGE_SIZE"]
