"""Settings > Hanging: the reading layout at start (single image, or the prior beside the
current image) and the dock panels shown at start (the ``[hanging]`` table). The DICOM tag dock
is hidden unless ticked, so that the image gets the space; T opens it at any time."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QWidget

from cxrlt_desktop.settings import HANGING_DEFAULTS

DOCK_NAMES = {
    "tags_dock": "DICOM tags (T)",
    "problems_dock": "Problems",
    "priors_dock": "Priors && PACS",
}


class HangingTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        self.layout_box = QComboBox()
        self.layout_box.setObjectName("hangingLayout")
        self.layout_box.addItem("Single image", "single")
        self.layout_box.addItem("Current + prior side by side", "comparison")
        form.addRow("Layout at start", self.layout_box)
        self.docks: dict[str, QCheckBox] = {}
        for name, text in DOCK_NAMES.items():
            box = QCheckBox(text)
            box.setObjectName(f"hangingDock_{name}")
            self.docks[name] = box
            form.addRow("Shown at start" if len(self.docks) == 1 else "", box)
        note = QLabel("C switches the layout while reading; the choice is remembered.")
        note.setWordWrap(True)
        form.addRow(note)

    def load(self, hanging: dict[str, Any]) -> None:
        h = {**HANGING_DEFAULTS, **(hanging or {})}
        self.layout_box.setCurrentIndex(max(0, self.layout_box.findData(h["layout"])))
        for name, box in self.docks.items():
            box.setChecked(name in h["docks"])

    def table(self) -> dict[str, Any]:
        """The ``[hanging]`` table (defaults left out: an empty table writes nothing)."""
        h = {
            "layout": self.layout_box.currentData(),
            "docks": [n for n, b in self.docks.items() if b.isChecked()],
        }
        return {k: v for k, v in h.items() if HANGING_DEFAULTS.get(k) != v}


__all__ = ["HangingTab"]
