"""The GUI's DICOM node: Settings > DICOM node, the status-bar status, and a study pushed by a
pynetdicom SCU appearing on the window's worklist, scored, without anyone touching the window."""

from __future__ import annotations

import socket
from dataclasses import replace

import pydicom
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _push(port: int, path) -> int:
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRLT")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def _node(tmp_path, **kw):
    from cxrlt_desktop.settings import DICOM_NODE_DEFAULTS

    return {
        **DICOM_NODE_DEFAULTS,
        "enabled": True,
        "port": _free_port(),
        "inbox": tmp_path / "inbox",
        "min_free_mb": 1,
        **kw,
    }


def test_pushed_study_appears_on_the_worklist_scored(
    qtbot, make_window, model_settings, tmp_path, rg1_uncr
):
    settings = replace(model_settings, mode="fast", dicom_node=_node(tmp_path))
    window = make_window(settings)
    window.show()
    port = settings.dicom_node["port"]
    label = window.dicom_node.label
    assert window.dicom_node.listening
    assert label.text() == f"DICOM: CXRLT on 127.0.0.1:{port}"
    assert _push(port, rg1_uncr) == 0
    uid = pydicom.dcmread(rg1_uncr, stop_before_pixels=True).StudyInstanceUID

    def scored() -> bool:
        model = window.worklist_model
        row = model.row_for_uid(uid)
        return row >= 0 and model.row_data(row).n_scored == 1

    qtbot.waitUntil(scored, timeout=300_000)
    assert label.text() == f"DICOM: CXRLT on 127.0.0.1:{port}, 1 received"
    window.grab().save(str(tmp_path / "window.png"))
    window.close()
    qtbot.waitUntil(lambda: not window.dicom_node.listening, timeout=60_000)


def test_port_in_use_is_shown_and_the_app_goes_on(qtbot, make_window, model_settings, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        window = make_window(replace(model_settings, dicom_node=_node(tmp_path, port=port)))
        assert not window.dicom_node.listening
        assert window.dicom_node.label.text().startswith("DICOM: not listening: ")
        assert "in use" in window.dicom_node.label.text()


def test_settings_tab_switches_the_node(qtbot, make_window, model_settings, tmp_path):
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.settings_dialog import SettingsDialog

    window = make_window(model_settings)
    assert not window.dicom_node.listening
    assert window.dicom_node.label.text() == "DICOM: off"
    base = replace(model_settings, dicom_node=_node(tmp_path, enabled=False, min_free_mb=5))
    dlg = SettingsDialog(base)
    qtbot.addWidget(dlg)
    tab = dlg.dicom_node_tab
    port = _free_port()
    tab.enabled.setChecked(True)
    tab.aet.setText("READROOM2")
    tab.port.setValue(port)
    tab.allow.setText("CR_ROOM1, PACS@127.0.0.1")
    dlg.tabs.setCurrentWidget(tab)
    dlg.grab().save(str(tmp_path / "dicom_tab.png"))
    node = Settings.from_dict(dlg._document()).dicom_node
    assert node["enabled"] and node["aet"] == "READROOM2" and node["port"] == port
    assert node["allow"] == ["CR_ROOM1", "PACS@127.0.0.1"]
    assert node["min_free_mb"] == 5  # a key the tab does not show is kept
    assert str(node["inbox"]) == str(tmp_path / "inbox")
    window.dicom_node.apply(Settings.from_dict(dlg._document()))
    assert window.dicom_node.listening
    assert window.dicom_node.label.text() == f"DICOM: READROOM2 on 127.0.0.1:{port}"
    window.dicom_node.apply(model_settings)  # switched off again
    assert not window.dicom_node.listening and window.dicom_node.label.text() == "DICOM: off"
    tab.allow.setText("BAD@")
    with pytest.raises(Exception, match="dicom_node"):
        Settings.from_dict(dlg._document())
