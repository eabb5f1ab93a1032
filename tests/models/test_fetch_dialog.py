"""Settings > "Get the published models": the dialog with the release's pins (nothing to
fetch: the manual route is shown), a download from the local hub that fills the settings
dialog's model fields, and a cancel that leaves nothing."""

from __future__ import annotations

from pathlib import Path

from conftest import TASK1_FILE

from cxrlt_desktop.models import Registry
from cxrlt_desktop.settings import Settings


def test_release_pins_show_the_manual_route(qtbot, user_dirs, tmp_path):
    from cxrlt_desktop.ui.models_fetch_dialog import ModelsFetchDialog

    dlg = ModelsFetchDialog()
    qtbot.addWidget(dlg)
    dlg.show()
    assert not dlg.download.isEnabled()
    assert all(not b.isEnabled() for b in dlg.checks.values())
    assert "cxrlt models add PATH" in dlg.status.text()
    assert "research purposes only" in dlg.licences.toPlainText()
    assert "Task 1 mAP 0.583" in dlg.licences.toPlainText()  # the model card is shown
    dlg.grab().save(str(tmp_path / "fetch-dialog-unpinned.png"))


def test_download_fills_the_settings_dialog(qtbot, pins_file, hub_url, user_dirs, tmp_path):
    from cxrlt_desktop.ui.settings_dialog import SettingsDialog

    sd = SettingsDialog(Settings())
    qtbot.addWidget(sd)
    sd.show()
    dest = tmp_path / "models"
    from cxrlt_desktop.ui.models_fetch_dialog import ModelsFetchDialog

    dlg = ModelsFetchDialog(sd, pins=pins_file, dest=dest, endpoint=hub_url)
    dlg.installed.connect(sd.use_models)
    qtbot.addWidget(dlg)
    dlg.show()
    assert not dlg.download.isEnabled()  # licences not accepted yet
    dlg.accept_box.setChecked(True)
    assert dlg.download.isEnabled()
    with qtbot.waitSignal(dlg.fetchFinished, timeout=120_000) as sig:
        dlg.download.click()
        assert dlg.cancel_button.isEnabled()
    ok, msg = sig.args
    assert ok, msg
    assert "Installed and verified" in dlg.status.text()
    task1 = (dest / "task1-csra" / TASK1_FILE).resolve()
    assert [sd.checkpoints.item(i).text() for i in range(sd.checkpoints.count())] == [str(task1)]
    assert Path(sd.clip_model.text()) == (dest / "whyxrayclip").resolve()
    reg = Registry()
    assert {m.name for m in reg.models} == {"task1-csra", "whyxrayclip"}
    assert all(reg.licence_accepted(m.licence.id, m.licence.text) for m in dlg.models)
    dlg.grab().save(str(tmp_path / "fetch-dialog-done.png"))


def test_cancel_leaves_nothing(qtbot, pins_file, hub, hub_url, user_dirs, tmp_path):
    from cxrlt_desktop.ui.models_fetch_dialog import ModelsFetchDialog

    hub.slow.add("open_clip_pytorch_model.bin")
    dest = tmp_path / "models"
    dlg = ModelsFetchDialog(pins=pins_file, dest=dest, endpoint=hub_url)
    qtbot.addWidget(dlg)
    dlg.checks["task1-csra"].setChecked(False)
    dlg.accept_box.setChecked(True)
    dlg.download.click()
    qtbot.waitUntil(lambda: "open_clip_pytorch_model.bin" in dlg.status.text(), timeout=60_000)
    with qtbot.waitSignal(dlg.fetchFinished, timeout=60_000) as sig:
        dlg.cancel_button.click()
    ok, msg = sig.args
    assert not ok and "cancelled" in msg
    qtbot.waitUntil(lambda: not dlg.running, timeout=10_000)
    assert sorted(p.name for p in dest.iterdir()) == []
    assert Registry().models == []
    assert dlg.download.isEnabled()


def test_settings_button_opens_the_fetch_dialog(qtbot, user_dirs):
    from PySide6.QtWidgets import QPushButton

    from cxrlt_desktop.ui.settings_dialog import SettingsDialog

    sd = SettingsDialog(Settings())
    qtbot.addWidget(sd)
    sd.show()
    sd.findChild(QPushButton, "getPublishedModels").click()
    qtbot.waitUntil(
        lambda: getattr(sd, "fetch_dialog", None) is not None and sd.fetch_dialog.isVisible()
    )
    assert sd.fetch_dialog.windowTitle() == "Get the published models"
    sd.fetch_dialog.reject()
