"""The key map: defaults, user overrides, and the errors that name the action and the key."""

from __future__ import annotations

import pytest

from cxrlt_desktop.ui.shortcuts import ACTIONS, DEFAULT_KEYMAP, help_html, merged_keymap


def test_defaults_are_unique_and_complete():
    # unique among the actions of one mode (an action of a mode may take an ordinary key)
    keys = [(a.mode, a.default.lower()) for a in ACTIONS]
    assert len(keys) == len(set(keys))
    assert merged_keymap(None) == DEFAULT_KEYMAP
    for needed in (
        "next_study",
        "previous_study",
        "next_image",
        "previous_image",
        "next_finding",
        "previous_finding",
        "verdict_present",
        "verdict_absent",
        "verdict_uncertain",
        "toggle_overlay",
        "reset_window",
    ):
        assert needed in DEFAULT_KEYMAP


def test_override_moves_a_key():
    km = merged_keymap({"verdict_present": "Y"})
    assert km["verdict_present"] == "Y" and km["verdict_absent"] == "A"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"fly": "X"}, "unknown action 'fly'"),
        ({"invert": " "}, "shortcuts.invert: empty key sequence"),
        ({"invert": "p"}, "key 'p' is already used by 'verdict_present'"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        merged_keymap(override)


def test_a_mode_may_share_an_ordinary_key_but_not_its_own():
    km = merged_keymap(None)
    assert km["nudge_left"] == km["previous_image"] == "Left"
    with pytest.raises(ValueError, match="key 'Left' is already used by 'nudge_left'"):
        merged_keymap({"nudge_right": "Left"})


def test_help_shows_the_user_keys():
    html = help_html(merged_keymap({"toggle_overlay": "Ctrl+T"}))
    assert "<code>Ctrl+T</code>" in html and "Show / hide the attention overlay" in html
