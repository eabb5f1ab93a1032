"""Settings > DICOM node: on/off, AE title, port, allowed peers (the ``[dicom_node]`` table).

The tab edits four keys; the other ``[dicom_node]`` keys of the file (bind, inbox, free-space
floor, limits, TLS) are kept as they are. Values are validated by ``Settings.from_dict`` when the
dialog's OK is pressed, like every other tab.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QFormLayout, QLabel, QLineEdit, QSpinBox, QWidget

from cxrlt_desktop.settings import DICOM_NODE_DEFAULTS

HELP = (
    "Receive studies pushed by a modality or PACS (C-STORE) into the library; they appear on the "
    "worklist and are scored. Listens on {bind} (set bind in the settings file's [dicom_node] "
    "to accept connections from the network). See docs/dicom-node.md."
)


class DicomNodeTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        self.enabled = QCheckBox("Listen for DICOM pushes (C-STORE)")
        self.enabled.setObjectName("dicomNodeEnabled")
        self.aet = QLineEdit()
        self.aet.setObjectName("dicomNodeAet")
        self.aet.setMaxLength(16)
        self.port = QSpinBox()
        self.port.setObjectName("dicomNodePort")
        self.port.setRange(1, 65535)
        self.allow = QLineEdit()
        self.allow.setObjectName("dicomNodeAllow")
        self.allow.setPlaceholderText("any calling AE title (e.g. CR_ROOM1, PACS@10.0.0.5)")
        self.help = QLabel("")
        self.help.setWordWrap(True)
        form.addRow(self.enabled)
        form.addRow("AE title", self.aet)
        form.addRow("Port", self.port)
        form.addRow("Allowed peers", self.allow)
        form.addRow(self.help)
        self._base: dict[str, Any] = dict(DICOM_NODE_DEFAULTS)

    def load(self, node: dict[str, Any]) -> None:
        self._base = dict(node)
        self.enabled.setChecked(bool(node.get("enabled")))
        self.aet.setText(str(node.get("aet") or DICOM_NODE_DEFAULTS["aet"]))
        self.port.setValue(int(node.get("port") or DICOM_NODE_DEFAULTS["port"]))
        self.allow.setText(", ".join(node.get("allow") or []))
        self.help.setText(HELP.format(bind=node.get("bind") or DICOM_NODE_DEFAULTS["bind"]))

    def table(self) -> dict[str, Any]:
        """The ``[dicom_node]`` table: the loaded one with this tab's four keys, defaults left
        out (an empty table: nothing to write)."""
        node = dict(self._base)
        node.update(
            enabled=self.enabled.isChecked(),
            aet=self.aet.text().strip(),
            port=self.port.value(),
            allow=[a.strip() for a in self.allow.text().replace(";", ",").split(",") if a.strip()],
        )
        return {
            k: (str(v) if hasattr(v, "__fspath__") else v)
            for k, v in node.items()
            if v is not None and DICOM_NODE_DEFAULTS.get(k) != v
        }
