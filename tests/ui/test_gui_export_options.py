"""File > Export's options dialog: the same defaults as ``cxrlt export`` (dates shifted when
de-identified, burned-in images left out unless allowed), with the real widgets."""

from __future__ import annotations


def test_export_dialog_defaults_follow_the_command_line(qtbot):

    from cxrlt_desktop.ui.export_dialog import ExportDialog

    dlg = ExportDialog()
    qtbot.addWidget(dlg)
    assert dlg.options() == {
        "include_phi": False,
        "shift_dates": True,
        "copy_images": False,
        "allow_burned_in": False,
        "sr": False,
    }
    # Keeping identifiers keeps the dates too, until the reader sets the box himself.
    dlg.include_phi.click()
    assert dlg.options()["include_phi"] and not dlg.options()["shift_dates"]
    dlg.include_phi.click()
    assert dlg.options()["shift_dates"]
    dlg.shift_dates.click()  # the reader's choice
    dlg.include_phi.click()
    dlg.include_phi.click()
    assert not dlg.options()["shift_dates"]

    # Burned-in images: only meaningful with copies, off unless asked.
    assert not dlg.allow_burned_in.isEnabled()
    dlg.copy_images.click()
    assert dlg.allow_burned_in.isEnabled() and not dlg.options()["allow_burned_in"]
    dlg.allow_burned_in.click()
    assert dlg.options()["allow_burned_in"] and dlg.options()["copy_images"]
    dlg.copy_images.click()
    assert not dlg.options()["allow_burned_in"]
