"""Every action of the window as data: its id, text, handler, default key, tool-bar text, and
the menus that list it.

An :class:`ActionSpec` is one declaration; :data:`ALL_ACTIONS` holds them all and :data:`MENUS`
says which menu lists which action, in order (``"-"`` is a separator, ``"dock:NAME"`` the show /
hide action of the window's dock ``NAME``). The window builds its QActions, menus and image tool
row from these tables. :data:`ACTIONS` are the actions with an editable key: the Shortcuts tab of
the settings dialog and Help > Keyboard and scores list them, and the key map is a plain
``{action: key sequence}`` dict so that settings can store and edit it; :func:`merged_keymap`
validates a user's overrides against the defaults. An action of a mode (:data:`POINT_MODE`: a
measurement point is selected for keyboard editing) is enabled only while the mode is on and
may share its key with an ordinary action, which gives way meanwhile (:mod:`.measure_keys`). Help > Keyboard and scores and Help > About
are built here too (:func:`help_dialog`, :func:`about_box`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    """One action of the window.

    ``id`` is the settings key and the QAction's name (``action_<id>``); ``text`` what the action
    does (menus, Help and the Shortcuts tab); ``handler`` the window attribute (dotted path)
    called with ``args``; ``default`` the default key, editable in Settings ("" for an action
    without an editable key); ``toolbar`` the short text of the image tool row, which the menus
    then show too; ``standard_key`` a platform key (a ``QKeySequence.StandardKey`` name), fixed;
    ``mode`` "" for an action that is always there, or the mode it belongs to (its key is unique
    among the mode's actions and may be an ordinary action's too).
    """

    id: str
    text: str
    handler: str
    default: str = ""
    args: tuple = ()
    toolbar: str | None = None
    standard_key: str | None = None
    mode: str = ""


# The mode of keyboard editing: a measurement point is selected (Tab); the arrows move it.
POINT_MODE = "point"
# Arrow keys while a point is selected: (name, key, display step right/down)
_NUDGES = (("left", "Left", (-1, 0)), ("right", "Right", (1, 0)))
_NUDGES += (("up", "Up", (0, -1)), ("down", "Down", (0, 1)))

_A = ActionSpec
ALL_ACTIONS: tuple[ActionSpec, ...] = (
    _A("next_study", "Next study in the worklist", "worklist_panel.step", "PgDown", (1,)),
    _A("previous_study", "Previous study in the worklist", "worklist_panel.step", "PgUp", (-1,)),
    _A("next_image", "Next image of the study (across series)", "session.next_image", "Right"),
    _A("previous_image", "Previous image of the study", "session.previous_image", "Left"),
    _A("next_series", "First image of the next series", "session.next_series", "Ctrl+Right"),
    _A(
        "previous_series",
        "First image of the previous series",
        "session.previous_series",
        "Ctrl+Left",
    ),
    _A("next_finding", "Next finding", "findings.next_finding", "Down"),
    _A("previous_finding", "Previous finding", "findings.previous_finding", "Up"),
    _A(
        "verdict_present", "Current finding: present", "findings.request_verdict", "P", ("present",)
    ),
    _A("verdict_absent", "Current finding: absent", "findings.request_verdict", "A", ("absent",)),
    _A(
        "verdict_uncertain",
        "Current finding: uncertain",
        "findings.request_verdict",
        "U",
        ("uncertain",),
    ),
    _A(
        "agree_all",
        "Agree with all AI findings of this image",
        "review.agree_with_all",
        "Ctrl+Return",
    ),
    _A(
        "toggle_overlay", "Show / hide the attention overlay", "image_panel.overlay_box.toggle", "O"
    ),
    _A(
        "reset_window",
        "Reset window/level to the header window",
        "viewer.reset_window",
        "R",
        toolbar="Reset W/L",
    ),
    _A("invert", "Invert the display", "viewer.toggle_invert", "I", toolbar="Invert"),
    _A("fit", "Fit the image to the view", "viewer.fit", "F", toolbar="Fit"),
    _A("one_to_one", "One image pixel per screen pixel", "viewer.one_to_one", "1", toolbar="1:1"),
    _A(
        "rotate",
        "Rotate the display 90 degrees clockwise",
        "viewer.rotate",
        "Ctrl+R",
        (1,),
        toolbar="Rotate",
    ),
    _A("flip", "Flip the display horizontally", "viewer.flip_horizontal", "H", toolbar="Flip"),
    _A("preset_lung", "Window preset: lung", "image_panel.apply_named_preset", "F2", ("Lung",)),
    _A(
        "preset_mediastinum",
        "Window preset: mediastinum",
        "image_panel.apply_named_preset",
        "F3",
        ("Mediastinum",),
    ),
    _A("preset_bone", "Window preset: bone", "image_panel.apply_named_preset", "F4", ("Bone",)),
    _A(
        "next_preset",
        "Next window preset (the file's VOI LUTs and windows first)",
        "image_panel.step_preset",
        "W",
        (1,),
    ),
    _A("previous_preset", "Previous window preset", "image_panel.step_preset", "Shift+W", (-1,)),
    _A(
        "toggle_overlay_planes",
        "Show / hide the file's overlay planes (graphics)",
        "image_panel.toggle_overlay_planes",
        "G",
    ),
    _A("note", "Edit the note of this image", "review.focus_note", "N"),
    # Reading tools (ui/reading_tools.py)
    _A(
        "toggle_comparison",
        "Comparison layout: the prior beside the current image",
        "reading.toggle_comparison",
        "C",
    ),
    _A("measure_distance", "Measure a distance", "reading.start_measure", "M", ("distance",)),
    _A("measure_angle", "Measure an angle", "reading.start_measure", "Shift+M", ("angle",)),
    _A(
        "measure_cobb",
        "Measure a Cobb angle (two end plates)",
        "reading.start_measure",
        "B",
        ("cobb",),
    ),
    _A(
        "measure_ctr",
        "Measure the cardiothoracic ratio (heart, then thorax width)",
        "reading.start_measure",
        "Shift+C",
        ("ctr",),
    ),
    _A("cancel_measure", "Cancel the measurement being drawn", "reading.cancel_measure", "Esc"),
    _A(
        "delete_measurement",
        "Delete the selected measurement",
        "reading.delete_measurement",
        "Del",
    ),
    _A(
        "delete_measurement_backspace",
        "Delete the selected measurement (second key)",
        "reading.delete_measurement",
        "Backspace",
    ),
    _A(
        "next_measure_point",
        "Select the next measurement point (keyboard editing)",
        "reading.step_point",
        "Tab",
        (1,),
    ),
    _A(
        "previous_measure_point",
        "Select the previous measurement point",
        "reading.step_point",
        "Shift+Tab",
        (-1,),
    ),
    *(
        _A(
            f"nudge_{name}",
            f"Selected measurement point: 1 image pixel {name}",
            "reading.nudge_point",
            key,
            step,
            mode=POINT_MODE,
        )
        for name, key, step in _NUDGES
    ),
    *(
        _A(
            f"nudge_{name}_10",
            f"Selected measurement point: 10 image pixels {name}",
            "reading.nudge_point",
            f"Shift+{key}",
            (10 * step[0], 10 * step[1]),
            mode=POINT_MODE,
        )
        for name, key, step in _NUDGES
    ),
    _A("toggle_tags", "Show / hide the DICOM tags", "reading.toggle_dock", "T", ("tags_dock",)),
    # Menu actions without an editable key
    _A("open", "&Open folder...", "choose_folder", standard_key="Open"),
    _A("score", "&Score pending images", "score_pending"),
    _A("export", "&Export labels...", "exports.choose_and_start"),
    _A("settings", "Se&ttings...", "open_settings", standard_key="Preferences"),
    _A("quit", "&Quit", "close", standard_key="Quit"),
    _A("help", "&Keyboard and scores", "show_help"),
    _A("about", "&About", "show_about"),
)
del _A

# The actions whose key the user can change (the settings dialog and Help read this).
ACTIONS: tuple[ActionSpec, ...] = tuple(a for a in ALL_ACTIONS if a.default)

MENUS: dict[str, list[str]] = {
    "&File": ["open", "score", "-", "export", "-", "settings", "-", "quit"],
    "&View": [
        "toggle_overlay",
        "reset_window",
        "invert",
        "fit",
        "one_to_one",
        "rotate",
        "flip",
        "-",
        "preset_lung",
        "preset_mediastinum",
        "preset_bone",
        "next_preset",
        "previous_preset",
        "toggle_overlay_planes",
        "-",
        "toggle_comparison",
        "measure_distance",
        "measure_angle",
        "measure_cobb",
        "measure_ctr",
        "cancel_measure",
        "delete_measurement",
        "next_measure_point",
        "previous_measure_point",
        "-",
        "toggle_tags",
        "dock:tags_dock",
        "dock:problems_dock",
    ],
    "&Navigate": [
        "next_study",
        "previous_study",
        "next_image",
        "previous_image",
        "next_series",
        "previous_series",
        "next_finding",
        "previous_finding",
    ],
    "&Review": ["verdict_present", "verdict_absent", "verdict_uncertain", "agree_all", "note"],
    "&Help": ["help", "about"],
}

# The image tool row, left to right (presets and the overlay have their own row).
VIEW_TOOLS: tuple[str, ...] = ("invert", "rotate", "flip", "fit", "one_to_one", "reset_window")

DEFAULT_KEYMAP: dict[str, str] = {a.id: a.default for a in ACTIONS}
ACTION_TEXT: dict[str, str] = {a.id: a.text for a in ACTIONS}
ACTION_MODE: dict[str, str] = {a.id: a.mode for a in ACTIONS}
ShortcutAction = ActionSpec  # the name the key map had before every action was declared here


def merged_keymap(overrides: dict[str, str] | None) -> dict[str, str]:
    """Defaults overlaid with the user's keys.

    Raises
    ------
    ValueError
        For an unknown action name, an empty key, or two actions on the same key (of the same
        mode: an action of a mode may take an ordinary action's key); the message names the
        action and the key.
    """
    keymap = dict(DEFAULT_KEYMAP)
    for action, key in (overrides or {}).items():
        if action not in keymap:
            raise ValueError(
                f"shortcuts: unknown action {action!r} (known: {', '.join(DEFAULT_KEYMAP)})"
            )
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"shortcuts.{action}: empty key sequence")
        keymap[action] = key.strip()
    seen: dict[tuple[str, str], str] = {}
    for action, key in keymap.items():
        norm = (ACTION_MODE[action], key.lower().replace(" ", ""))
        if norm in seen:
            raise ValueError(f"shortcuts.{action}: key {key!r} is already used by {seen[norm]!r}")
        seen[norm] = action
    return keymap


RARE_SCORE_HELP = """
<h3>Rare-finding score (worklist priority)</h3>
<p>For each image: <b>score = max over rare classes c of p<sub>c</sub> / t<sub>c</sub></b>,
where p<sub>c</sub> is the model's probability for finding c and t<sub>c</sub> its operating
threshold. The rare classes are the 6 zero-shot findings (Scoliosis, Osteopenia, Bulla,
Infarction, Adenopathy, Goiter) plus the in-distribution findings whose training prevalence is
below 1&nbsp;%. <i>Normal</i> never counts. A score of 1.0 or more means at least one rare
finding is at or above its threshold (flagged in the worklist). A study's score is the maximum
over its images. The worklist is ordered by it, highest first, then by study date.</p>
<h3>Findings panel</h3>
<ul>
<li>The bar shows the probability; the black tick is the operating threshold; rows at or above
threshold are highlighted.</li>
<li>&#9660; marks a score that <i>normal gating</i> cut by more than half: the supervised scores
are multiplied by (1 - p<sub>Normal</sub>)<sup>0.5</sup>, so a confident "normal" suppresses them.
</li>
<li>Zero-shot findings are sigmoid(5 x cosine similarity) of a CLIP model against text prompts:
<b>uncalibrated</b>; compare each with its own threshold.</li>
</ul>
<h3>Mouse</h3>
<p>Left drag: window/level (horizontal = width, vertical = level). Middle drag or Ctrl + left
drag: pan. Wheel or right drag: zoom.</p>
"""


def help_dialog(parent, keymap: dict[str, str]):
    """Help > Keyboard and scores as a non-modal dialog (deleted on close); returns it."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

    dlg = QDialog(parent)
    dlg.setWindowTitle("Keyboard and scores")
    dlg.resize(640, 640)
    text = QTextBrowser()
    text.setObjectName("helpText")
    text.setHtml(help_html(keymap))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dlg.reject)
    lay = QVBoxLayout(dlg)
    lay.addWidget(text)
    lay.addWidget(buttons)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.show()
    return dlg


def about_box(parent, title: str) -> None:
    """Help > About: the version, what the application is, that it is not a medical device, and
    the model cards of the models ``parent.settings`` configures."""
    from PySide6.QtWidgets import QMessageBox

    from cxrlt_desktop import __version__
    from cxrlt_desktop.ui.model_facts import about_models_html

    QMessageBox.about(
        parent,
        title,
        f"<b>{title}</b> {__version__}<br>Chest X-ray triage with the CXR-LT 2026 "
        "first-place method. Not a medical device."
        + about_models_html(getattr(parent, "settings", None)),
    )


def help_html(keymap: dict[str, str]) -> str:
    """The Help > Keyboard and scores page: every shortcut and the rare-finding formula."""

    def rows(mode: str) -> str:
        return "".join(
            f"<tr><td><code>{keymap.get(a.id, a.default)}</code></td><td>{a.text}</td></tr>"
            for a in ACTIONS
            if a.mode == mode
        )

    return (
        f"<h3>Keyboard</h3><table cellpadding='3'>{rows('')}</table>"
        "<p>While a measurement point is selected (keyboard editing; Esc ends it), these keys "
        "take the place of the ones above:</p>"
        f"<table cellpadding='3'>{rows(POINT_MODE)}</table>"
        "<p>Edit the keys in File &gt; Settings &gt; Shortcuts.</p>" + RARE_SCORE_HELP
    )


__all__ = [
    "ACTIONS",
    "ACTION_MODE",
    "ACTION_TEXT",
    "ALL_ACTIONS",
    "DEFAULT_KEYMAP",
    "MENUS",
    "POINT_MODE",
    "RARE_SCORE_HELP",
    "VIEW_TOOLS",
    "ActionSpec",
    "ShortcutAction",
    "about_box",
    "help_dialog",
    "help_html",
    "merged_keymap",
]
