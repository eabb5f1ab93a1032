"""A DICOM tag browser: every element of the current file's header, sequences as subtrees, and
the window's "DICOM tags" dock that holds it.

Patient-identifying values are masked unless the worklist shows PHI. The header is read with
``stop_before_pixels`` (about a millisecond), so the GUI thread does it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from cxrlt_desktop.library.identity import ScannedFile

MASK = "(hidden)"
MAX_VALUE_CHARS = 200
# The input layer's PHI list plus what else identifies a person or a visit.
EXTRA_PHI = (
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionAddress",
    "StationName",
    "PatientMotherBirthName",
)


def _phi_keywords() -> set[str]:
    try:
        from engine.imageio import PHI_KEYWORDS
    except ImportError:  # the input layer not installed: fall back to the agreed list
        PHI_KEYWORDS = (  # noqa: N806
            "PatientName",
            "PatientBirthDate",
            "PatientID",
            "AccessionNumber",
            "InstitutionName",
        )
    return set(PHI_KEYWORDS) | set(EXTRA_PHI)


class DicomTagBrowser(QWidget):
    """Tree of (tag, keyword, VR, value) with a text filter. While hidden (its dock closed, as
    by default) a header to show is only noted, and read when the browser is shown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._path: Path | None = None
        self._scanned: ScannedFile | None = None
        self._pending: tuple[Any, Any] | None = None  # (path, scanned) to read when shown
        self._show_phi = False
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter tags (keyword, tag or value)")
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Tag", "Keyword", "VR", "Value"])
        self.tree.setUniformRowHeights(True)
        self.tree.setColumnWidth(0, 90)
        self.tree.setColumnWidth(1, 190)
        self.tree.setColumnWidth(2, 36)
        self.message = QLabel("")
        self.message.setWordWrap(True)  # a refusal names what differs: it must not widen the dock
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.message)

    def set_show_phi(self, show: bool) -> None:
        self._show_phi = bool(show)
        if self._path is not None and self._pending is None:  # a pending one reads it then
            self.load(self._path, self._scanned)

    def clear(self) -> None:
        self._path = None
        self._pending = None
        self.tree.clear()
        self.message.setText("")

    def showEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        super().showEvent(event)
        if self._pending is not None:
            path, scanned = self._pending
            self.load(path, scanned)

    def load(self, path: str | Path | None, scanned: Any = None) -> None:
        """Show the header of ``path`` (a DICOM file); other files show a one-line note.

        With ``scanned`` (the image's record from the scan, or a zero-argument function
        returning it) the file is first checked to be the scanned one: a file replaced since
        (another patient's image) shows the refusal, never its header.
        """
        if not self.isVisible() and path is not None:
            self.tree.clear()
            self.message.setText("")
            self._path, self._pending = Path(path), (path, scanned)
            return
        self._pending = None
        if callable(scanned):
            scanned = scanned()
        import pydicom
        from pydicom.errors import InvalidDicomError

        from cxrlt_desktop.library.identity import FileChanged, check_header

        self.tree.clear()
        self._path = None if path is None else Path(path)
        self._scanned = scanned
        if self._path is None:
            self.message.setText("")
            return
        try:
            if scanned is not None:
                check_header(scanned)
            ds = pydicom.dcmread(self._path, stop_before_pixels=True, force=True)
        except FileChanged as exc:
            self.message.setText(f"{self._path.name}: {exc.reason}")
            return
        except (OSError, InvalidDicomError, ValueError) as exc:
            self.message.setText(f"{self._path.name}: no DICOM header ({exc})")
            return
        phi = set() if self._show_phi else _phi_keywords()
        if getattr(ds, "file_meta", None) is not None and len(ds.file_meta):
            meta_root = QTreeWidgetItem(["(0002)", "File meta information", "", ""])
            self.tree.addTopLevelItem(meta_root)
            self._add_elements(meta_root, ds.file_meta, phi)
        self._add_elements(self.tree.invisibleRootItem(), ds, phi)
        self.message.setText(f"{self._path.name}: {len(ds)} elements")
        self._on_filter_changed(self.filter_edit.text())

    def _add_elements(self, parent: QTreeWidgetItem, ds, phi: set[str]) -> None:
        for elem in ds:
            tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
            keyword = elem.keyword or elem.name
            if elem.VR == "SQ":
                item = QTreeWidgetItem([tag, keyword, "SQ", f"{len(elem.value)} item(s)"])
                parent.addChild(item)
                for i, sub in enumerate(elem.value):
                    sub_item = QTreeWidgetItem(["", f"Item {i + 1}", "", ""])
                    item.addChild(sub_item)
                    self._add_elements(sub_item, sub, phi)
                continue
            if keyword in phi:
                value = MASK
            elif elem.tag == 0x7FE00010 or elem.VR in ("OB", "OW", "OF", "OD", "UN"):
                value = f"<{len(elem.value) if elem.value is not None else 0} bytes>"
            else:
                value = str(elem.value)
                if len(value) > MAX_VALUE_CHARS:
                    value = value[:MAX_VALUE_CHARS] + "..."
            parent.addChild(QTreeWidgetItem([tag, keyword, str(elem.VR), value]))

    def _on_filter_changed(self, text: str) -> None:
        needle = text.strip().lower()

        def visit(item: QTreeWidgetItem) -> bool:
            child_match = False
            for i in range(item.childCount()):
                child_match = visit(item.child(i)) or child_match
            hay = " ".join(item.text(c) for c in range(4)).lower()
            match = not needle or needle in hay or child_match
            item.setHidden(not match)
            return match

        for i in range(self.tree.topLevelItemCount()):
            visit(self.tree.topLevelItem(i))

    def visible_keywords(self) -> list[str]:
        """Keywords of the visible top-level rows (tests use it)."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            if not it.isHidden():
                out.append(it.text(1))
        return out

    def value_of(self, keyword: str) -> str | None:
        items = self.tree.findItems(
            keyword, Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive, 1
        )
        return items[0].text(3) if items else None


class DicomTagsDock(QDockWidget):
    """The "DICOM tags" dock (object name ``tagsDock``) around a :class:`DicomTagBrowser`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("DICOM tags", parent)
        self.setObjectName("tagsDock")
        self.browser = DicomTagBrowser()
        self.setWidget(self.browser)


__all__ = ["DicomTagBrowser", "DicomTagsDock"]
