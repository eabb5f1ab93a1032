"""Settings TOML: round trip, and each bad key or value rejected with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrlt_desktop.settings import Settings, SettingsError


def test_defaults_when_missing(tmp_path):
    s = Settings.load(tmp_path / "none.toml")
    assert s.mode == "paper" and s.task1_checkpoints == [] and s.thresholds == {}


def test_round_trip(tmp_path):
    s = Settings(
        database="sqlite:////tmp/x.db",
        reviewer="Dr A",
        task1_checkpoints=[Path("/m/a.safetensors"), Path("/m/b.pth")],
        task1_weights=[1.0, 1.5],
        clip_model=Path("/m/clip"),
        mode="fast",
        device="cpu",
        precision="fp32",
        batch_size=4,
        thresholds={"Pneumothorax": 0.3},
        shortcuts={"verdict_present": "P"},
    )
    path = s.save(tmp_path / "settings.toml")
    assert Settings.load(path) == s
    assert "[models]" in path.read_text()


def test_every_problem_named(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(
        'colour = "red"\n'
        '[engine]\nmode = "slow"\nbatch_size = 0\nturbo = true\n'
        '[models]\ntask1_checkpoints = ["/a", "/b"]\ntask1_weights = [1.0]\n'
        "[thresholds]\nPneumothorax = 1.5\nUnicorn = 0.5\n"
    )
    with pytest.raises(SettingsError) as e:
        Settings.load(p)
    msg = str(e.value)
    assert str(p) in msg
    for needle in (
        "'colour'",
        "engine.mode",
        "engine.batch_size",
        "engine.turbo",
        "models.task1_weights",
        "'Pneumothorax'",
        "'Unicorn'",
    ):
        assert needle in msg, needle
    assert len(e.value.problems) == 6  # thresholds' two problems share one line


def test_not_toml(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("mode = = paper")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load(p)


def test_not_utf8_named_with_the_offset(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('reviewer = "Dr M\u00fcller"\n'.encode("latin-1"))
    with pytest.raises(SettingsError) as e:
        Settings.load(p)
    assert str(e.value) == f"{p}: not utf-8 text (invalid byte at offset 16)"


def test_settings_over_a_mebibyte_refused_by_size(tmp_path):
    # A valid TOML file, only too large: refused before parsing (the limit is the file size).
    p = tmp_path / "big.toml"
    p.write_text('reviewer = "Dr A"\n' + "# padding\n" * 110_000)
    assert p.stat().st_size > 1 << 20
    with pytest.raises(SettingsError) as e:
        Settings.load(p)
    size = p.stat().st_size
    assert str(e.value) == f"{p}: too large: {size:,} bytes (at most 1,048,576 bytes accepted)"
    p.write_text('reviewer = "Dr A"\n' + "# padding\n" * 100_000)  # just under: fine
    assert Settings.load(p).reviewer == "Dr A"


def test_bool_is_not_a_number():
    with pytest.raises(SettingsError, match="engine.batch_size"):
        Settings.from_dict({"engine": {"batch_size": True}})


def test_engine_config_from_settings(csra_ckpt):
    s = Settings(task1_checkpoints=[csra_ckpt], mode="fast", device="cpu", batch_size=3)
    cfg = s.engine_config(image_size=64)
    assert (
        cfg.task1_checkpoints == [csra_ckpt]
        and cfg.mode == "fast"
        and cfg.batch_size == 3
        and cfg.image_size == 64
    )


def test_thresholds_accept_display_names_any_case():
    # The worklist shows display names ("Pneumoperitoneum"); the engine's class name differs
    # ("pneumoperitoneo"). Both, in any case, mean the same class and are stored by class name.
    s = Settings.from_dict(
        {"thresholds": {"Pneumoperitoneum": 0.25, "pneumothorax": 0.4, "Support Devices": 0.6}}
    )
    assert s.thresholds == {"pneumoperitoneo": 0.25, "Pneumothorax": 0.4, "Support Devices": 0.6}
    assert Settings.from_dict(s.to_dict()).thresholds == s.thresholds
    with pytest.raises(SettingsError, match="unknown finding 'Pneumo'"):
        Settings.from_dict({"thresholds": {"Pneumo": 0.5}})


def test_department_and_dicom_node_keys_round_trip(tmp_path):
    """The department/DICOM keys parse, save and load back unchanged; defaults stay out of the
    file."""
    doc = {
        "reviewer": "Dr A",
        "scoring": "workers",
        "flag_for_processing": True,
        "paths": {"/mnt/pacs-cache": "//server/pacs-cache"},
        "dicom_node": {"aet": "CXRLT1", "port": 11113, "allow": ["MOD1", "PACS@10.0.0.5"]},
        "pacs": {
            "main": {"aet": "ORTHANC", "host": "10.0.0.5", "port": 4242},
            "web": {"url": "http://127.0.0.1:8042/dicom-web"},
        },
    }
    s = Settings.from_dict(doc)
    assert s.dicom_node["bind"] == "127.0.0.1" and s.dicom_node["port"] == 11113
    assert s.dicom_node["enabled"] is False
    s.save(tmp_path / "s.toml")
    back = Settings.load(tmp_path / "s.toml")
    assert back == s
    assert "bind" not in back.to_dict()["dicom_node"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"scoring": "cloud"}, "scoring: must be one of workstation, workers"),
        ({"dicom_node": {"aet": "A" * 17}}, "AE title of 1-16"),
        ({"dicom_node": {"port": 70000}}, "port: must be an integer"),
        ({"dicom_node": {"allow": ["MOD@"]}}, "AET or AET@HOST"),
        ({"dicom_node": {"tls": True}}, "unknown key 'tls'"),
        ({"pacs": {"p": {"url": "ftp://x"}}}, "http:// or https://"),
        ({"pacs": {"p": {"aet": "A", "host": "h"}}}, "give aet, host and port"),
        ({"pacs": {"p": {"aet": "A", "host": "h", "port": 1, "url": "http://x"}}}, "url alone"),
        ({"paths": {"/a": ""}}, "non-empty strings"),
    ],
)
def test_bad_department_keys_named(doc, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_dict(doc)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/mnt/cache/a/b.dcm", "//srv/cache/a/b.dcm"),
        ("/mnt/cache", "//srv/cache"),
        ("/mnt/cachex/a.dcm", "/mnt/cachex/a.dcm"),  # whole components only
        ("/mnt/cache/deep/x.dcm", "/fast/x.dcm"),  # the longest prefix wins
        ("/other/a.dcm", "/other/a.dcm"),
    ],
)
def test_path_map_rewrites_whole_prefixes(path, expected):
    s = Settings.from_dict({"paths": {"/mnt/cache/": "//srv/cache", "/mnt/cache/deep": "/fast"}})
    assert s.map_path(path) == expected


@pytest.mark.parametrize(
    "policy, mode, requested, engine_mode",
    [
        ("auto", "paper", None, "paper"),  # by the device: progressive on a CPU, paper on a GPU
        ("auto", "fast", "fast", "fast"),
        ("progressive", "fast", "progressive", "paper"),  # the main pass is the paper one
        ("paper", "paper", "paper", "paper"),
        ("fast", "paper", "fast", "fast"),
    ],
)
def test_scoring_policy(tmp_path, policy, mode, requested, engine_mode):
    p = tmp_path / "s.toml"
    p.write_text(f'[engine]\nmode = "{mode}"\npolicy = "{policy}"\n')
    s = Settings.load(p)
    assert s.policy == policy and s.requested_policy() == requested
    assert s.engine_config().mode == engine_mode
    assert Settings.load(s.save(tmp_path / "again.toml")) == s
    assert ("policy" in (tmp_path / "again.toml").read_text()) == (policy != "auto")


def test_bad_scoring_policy_named(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[engine]\npolicy = "eventually"\n')
    with pytest.raises(SettingsError, match="engine.policy"):
        Settings.load(p)


@pytest.mark.parametrize(
    "cli_policy, cli_mode, settings_policy, settings_mode, expected",
    [
        (None, "fast", "auto", "paper", "fast"),  # --mode fast on the command line wins
        (None, None, "auto", "fast", "fast"),
        (None, None, "auto", "paper", None),  # by the device
        (None, None, "progressive", "paper", "progressive"),
        (None, "paper", "fast", "paper", None),  # --mode paper overrides a "fast" policy
        ("paper", "fast", "progressive", "paper", "paper"),  # --policy wins over everything
    ],
)
def test_the_commands_scoring_policy(
    cli_policy, cli_mode, settings_policy, settings_mode, expected
):
    from types import SimpleNamespace

    from cxrlt_desktop.commands._model_options import requested_policy

    settings = Settings(mode=settings_mode, policy=settings_policy)
    config = settings.engine_config(**({"mode": cli_mode} if cli_mode else {}))
    args = SimpleNamespace(policy=cli_policy)
    assert requested_policy(args, settings, config) == expected
