"""Settings dialog (validated by loading the models), first start, help, demo banner, drops."""

from __future__ import annotations

import json

import pytest
from gui_helpers import make_study_folder
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication


def _dialog(qtbot, settings, **kw):
    from cxrlt_desktop.ui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(settings, engine_overrides={"image_size": 64}, **kw)
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def test_ok_loads_the_models_and_returns_validated_settings(qtbot, ui_models):
    from cxrlt_desktop.settings import Settings

    ckpts, clip = ui_models
    dlg = _dialog(qtbot, Settings())
    dlg.set_checkpoints(ckpts)
    dlg.arch.setCurrentText("convnextv2_atto")
    dlg.clip_model.setText(str(clip))
    dlg.device.setCurrentText("cpu")
    dlg.mode.setCurrentText("fast")
    dlg.reviewer.setText("Dr Who")
    dlg._threshold_spins["Pneumothorax"].setValue(0.35)
    dlg._key_edits["toggle_overlay"].setKeySequence(QKeySequence("Ctrl+T"))
    with qtbot.waitSignal(dlg.validationFinished, timeout=120_000) as done:
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert done.args == [True, ""]
    s = dlg.result_settings
    assert [str(p) for p in s.task1_checkpoints] == [str(p) for p in ckpts]
    assert s.mode == "fast" and s.device == "cpu" and s.reviewer == "Dr Who"
    assert s.thresholds == {"Pneumothorax": 0.35}
    assert s.shortcuts == {"toggle_overlay": "Ctrl+T"}
    roles = sorted(m.role for m in dlg.loaded_predictor.models)
    assert roles == ["clip", "task1-csra"]  # fast mode keeps the CSRA model only
    assert dlg.result() == dlg.DialogCode.Accepted


def test_a_file_that_is_not_a_checkpoint_is_refused_with_its_name(qtbot, tmp_path):
    from cxrlt_desktop.settings import Settings

    bad = tmp_path / "notes.safetensors"
    bad.write_text("this is not a model")
    dlg = _dialog(qtbot, Settings())
    dlg.set_checkpoints([bad])
    dlg.arch.setCurrentText("convnextv2_atto")
    with qtbot.waitSignal(dlg.validationFinished, timeout=60_000) as done:
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    ok, message = done.args
    assert not ok and "notes.safetensors" in message
    assert dlg.isVisible() and dlg.result_settings is None
    assert "notes.safetensors" in dlg.error_label.text()


def test_bad_values_are_named_without_loading(qtbot, tmp_path):
    from cxrlt_desktop.settings import Settings

    dlg = _dialog(qtbot, Settings())
    dlg.set_checkpoints([tmp_path / "missing.safetensors"])
    with qtbot.waitSignal(dlg.validationFinished, timeout=5000) as done:
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert done.args[0] is False and "missing.safetensors: no such file" in done.args[1]
    dlg.set_checkpoints([])
    dlg._key_edits["invert"].setKeySequence(QKeySequence("P"))  # the verdict_present key
    with qtbot.waitSignal(dlg.validationFinished, timeout=5000) as done:
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert done.args[0] is False and "already used" in done.args[1]


def test_first_start_without_models_opens_settings_with_explanation(qtbot, make_window):
    from cxrlt_desktop.settings import Settings

    window = make_window(Settings(), first_start_dialog=True)
    window.show()
    qtbot.waitUntil(lambda: getattr(window, "settings_dialog", None) is not None, timeout=5000)
    dlg = window.settings_dialog
    assert dlg.isVisible() and dlg.intro.isVisible()
    assert "No models are configured" in dlg.intro.text()
    assert "none configured" in window.status_bar.model_status.text()
    dlg.reject()


def test_settings_accepted_apply_shortcuts_and_models(qtbot, make_window, ui_models, tmp_path):
    from cxrlt_desktop.settings import Settings

    ckpts, clip = ui_models
    window = make_window(Settings(reviewer="Dr A"))
    dlg = window.open_settings()
    dlg.set_checkpoints(ckpts[1:])
    dlg.arch.setCurrentText("convnextv2_atto")
    dlg.device.setCurrentText("cpu")
    dlg._key_edits["reset_window"].setKeySequence(QKeySequence("Ctrl+0"))
    with qtbot.waitSignal(dlg.validationFinished, timeout=120_000):
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert window.actions_by_id["reset_window"].shortcut().toString() == "Ctrl+0"
    assert window.predictors.configured and window.predictors.loaded() is dlg.loaded_predictor
    assert "CSRA convnextv2_atto" in window.status_bar.model_status.text()
    # the status says which CPU runtime runs the backbones
    expected = {"openvino": "cpu fp32 (OpenVINO) |", "onnxruntime": "cpu fp32 (ONNX Runtime) |"}
    assert expected.get(dlg.loaded_predictor.settings["backend"], "cpu fp32 |") in (
        window.status_bar.model_status.text()
    )
    saved = Settings.load(tmp_path / "settings.toml")
    assert saved.shortcuts == {"reset_window": "Ctrl+0"}


def test_help_lists_every_shortcut_and_the_score_formula(qtbot, make_window):
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.shortcuts import ACTIONS

    window = make_window(Settings(shortcuts={"next_study": "Ctrl+J"}))
    from PySide6.QtWidgets import QTextBrowser

    dlg = window.show_help()
    html = dlg.findChild(QTextBrowser, "helpText").toPlainText()
    for a in ACTIONS:
        assert a.text in html
    assert "Ctrl+J" in html
    assert "max over rare classes" in html
    assert window.actions_by_id["next_study"].shortcut().toString() == "Ctrl+J"
    dlg.close()


@pytest.mark.parametrize("demo_flag", [True, False])
def test_demo_banner_follows_the_model_manifest(qtbot, make_window, ui_models, tmp_path, demo_flag):
    import shutil

    from cxrlt_desktop.settings import Settings

    ckpts, _ = ui_models
    ckpt = tmp_path / "models" / "csra.safetensors"
    ckpt.parent.mkdir()
    shutil.copy(ckpts[1], ckpt)
    (tmp_path / "models" / "csra.json").write_text(
        json.dumps({"demo": demo_flag, "arch": "convnextv2_atto"})
    )
    window = make_window(Settings(task1_checkpoints=[ckpt], task1_arch="convnextv2_atto"))
    window.show()
    assert window.banner.isVisible() is demo_flag
    assert ("DEMO" in window.windowTitle()) is demo_flag
    if demo_flag:
        assert window.banner.text() == "DEMO MODEL - not for clinical use"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dropping_a_folder_scans_it(qtbot, make_window, tmp_path):
    from cxrlt_desktop.settings import Settings

    folder = make_study_folder(tmp_path / "in", None, n_phantoms=3, broken=False)
    window = make_window(Settings())  # no models: scan only
    window.show()
    qtbot.waitExposed(window)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    args = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    enter = QDragEnterEvent(QPoint(50, 50), *args)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    # Qt delivers a Drop only during a real drag, so the handler is called as Qt would call it.
    drop = QDropEvent(QPoint(50, 50).toPointF(), *args)
    with qtbot.waitSignal(window.jobFinished, timeout=120_000) as job:
        window.dropEvent(drop)
    assert job.args[0].ok and job.args[0].scanned == 3
    assert window.worklist_model.rowCount() >= 2  # studies listed, unscored
    assert all(r.rare_score is None for r in window.worklist_model.rows())
    # Export always exists (cxrlt_desktop.export): enabled while no export runs.
    assert window.export_action.isEnabled()


def test_keys_no_tab_edits_survive_ok_and_the_for_processing_box_round_trips(qtbot, ui_models):
    """The file's [paths] and [pacs.NAME] tables have no tab: OK must write them back as they
    were (they were dropped before); the FOR PROCESSING box loads and saves its key."""
    from cxrlt_desktop.settings import Settings

    ckpts, clip = ui_models
    before = Settings.from_dict(
        {
            "flag_for_processing": True,
            "paths": {"/mnt/cache": "//srv/cache"},
            "pacs": {"main": {"aet": "PACS", "host": "10.0.0.5", "port": 4242}},
            "models": {"task1_checkpoints": [str(p) for p in ckpts], "clip_model": str(clip)},
            "engine": {"device": "cpu", "mode": "fast"},
        }
    )
    dlg = _dialog(qtbot, before)
    dlg.arch.setCurrentText("convnextv2_atto")
    assert dlg.flag_for_processing.isChecked()
    dlg.flag_for_processing.setChecked(False)
    with qtbot.waitSignal(dlg.validationFinished, timeout=120_000) as done:
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert done.args == [True, ""]
    s = dlg.result_settings
    assert s.paths == {"/mnt/cache": "//srv/cache"}
    assert s.pacs == {"main": {"aet": "PACS", "host": "10.0.0.5", "port": 4242}}
    assert s.flag_for_processing is False
