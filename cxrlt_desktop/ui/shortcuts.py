"""Keyboard shortcuts: the actions, their default keys, and the help text that lists them.

The key map is a plain ``{action: key sequence}`` dict so that settings can store and edit it;
:func:`merged_keymap` validates a user's overrides against the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShortcutAction:
    """One keyboard action: its id (settings key), default key sequence and help text."""

    id: str
    default: str
    text: str


ACTIONS: tuple[ShortcutAction, ...] = (
    ShortcutAction("next_study", "PgDown", "Next study in the worklist"),
    ShortcutAction("previous_study", "PgUp", "Previous study in the worklist"),
    ShortcutAction("next_image", "Right", "Next image of the study (across series)"),
    ShortcutAction("previous_image", "Left", "Previous image of the study"),
    ShortcutAction("next_series", "Ctrl+Right", "First image of the next series"),
    ShortcutAction("previous_series", "Ctrl+Left", "First image of the previous series"),
    ShortcutAction("next_finding", "Down", "Next finding"),
    ShortcutAction("previous_finding", "Up", "Previous finding"),
    ShortcutAction("verdict_present", "P", "Current finding: present"),
    ShortcutAction("verdict_absent", "A", "Current finding: absent"),
    ShortcutAction("verdict_uncertain", "U", "Current finding: uncertain"),
    ShortcutAction("agree_all", "Ctrl+Return", "Agree with all AI findings of this image"),
    ShortcutAction("toggle_overlay", "O", "Show / hide the attention overlay"),
    ShortcutAction("reset_window", "R", "Reset window/level to the header window"),
    ShortcutAction("invert", "I", "Invert the display"),
    ShortcutAction("fit", "F", "Fit the image to the view"),
    ShortcutAction("one_to_one", "1", "One image pixel per screen pixel"),
    ShortcutAction("rotate", "Ctrl+R", "Rotate the display 90 degrees clockwise"),
    ShortcutAction("flip", "H", "Flip the display horizontally"),
    ShortcutAction("preset_lung", "F2", "Window preset: lung"),
    ShortcutAction("preset_mediastinum", "F3", "Window preset: mediastinum"),
    ShortcutAction("preset_bone", "F4", "Window preset: bone"),
    ShortcutAction("note", "N", "Edit the note of this image"),
)

DEFAULT_KEYMAP: dict[str, str] = {a.id: a.default for a in ACTIONS}
ACTION_TEXT: dict[str, str] = {a.id: a.text for a in ACTIONS}


def merged_keymap(overrides: dict[str, str] | None) -> dict[str, str]:
    """Defaults overlaid with the user's keys.

    Raises
    ------
    ValueError
        For an unknown action name, an empty key, or two actions on the same key; the message
        names the action and the key.
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
    seen: dict[str, str] = {}
    for action, key in keymap.items():
        norm = key.lower().replace(" ", "")
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


def help_html(keymap: dict[str, str]) -> str:
    """The Help > Keyboard and scores page: every shortcut and the rare-finding formula."""
    rows = "".join(
        f"<tr><td><code>{keymap.get(a.id, a.default)}</code></td><td>{a.text}</td></tr>"
        for a in ACTIONS
    )
    return (
        "<h3>Keyboard</h3><table cellpadding='3'>"
        f"{rows}</table><p>Edit the keys in File &gt; Settings &gt; Shortcuts.</p>"
        + RARE_SCORE_HELP
    )


__all__ = [
    "ACTIONS",
    "ACTION_TEXT",
    "DEFAULT_KEYMAP",
    "RARE_SCORE_HELP",
    "ShortcutAction",
    "help_html",
    "merged_keymap",
]
