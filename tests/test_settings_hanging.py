"""Settings [hanging]: the reading layout and the docks shown at start, saved and read back;
bad values refused in one line naming the key."""

from __future__ import annotations

import pytest

from cxrlt_desktop.settings import HANGING_DEFAULTS, Settings, SettingsError


def test_defaults_single_layout_and_no_tag_dock(tmp_path):
    s = Settings()
    assert s.hanging == {"layout": "single", "docks": ["problems_dock"]}
    assert "tags_dock" not in s.hanging["docks"]
    # defaults are not written
    assert "hanging" not in s.to_dict()
    assert Settings.load(s.save(tmp_path / "a.toml")).hanging == HANGING_DEFAULTS


def test_layout_and_docks_round_trip(tmp_path):
    s = Settings()
    s.hanging = {"layout": "comparison", "docks": ["tags_dock", "priors_dock"]}
    path = s.save(tmp_path / "s.toml")
    assert "[hanging]" in path.read_text()
    assert Settings.load(path).hanging == {
        "layout": "comparison",
        "docks": ["tags_dock", "priors_dock"],
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"layout": "quad"}, "hanging: layout: must be one of single, comparison"),
        ({"docks": ["tags_dock", "nope"]}, "docks: unknown ['nope']"),
        ({"colour": 1}, "unknown key 'colour'"),
    ],
)
def test_bad_hanging_values_are_refused(table, message):
    with pytest.raises(SettingsError, match="hanging") as exc:
        Settings.from_dict({"hanging": table})
    assert message in str(exc.value)
