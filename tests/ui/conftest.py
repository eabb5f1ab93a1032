"""Fixtures for the GUI tests: real store, real random-weight models, real DICOM folders.

The models are random-weight convnextv2_atto checkpoints (CSRA and MLP layouts) and a tiny
open_clip folder, run at a 64 px Task 1 input so scoring takes tens of milliseconds per image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SIZE = 64


@pytest.fixture(autouse=True)
def _isolated_user_files(tmp_path, monkeypatch):
    # Settings and pseudonym salt of the tests never touch the user's folders.
    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "settings.toml"))


@pytest.fixture(scope="session")
def ui_models(tmp_path_factory):
    """(task1 checkpoint paths [mlp, csra], clip folder)."""
    from engine.random_models import write_random_task1, write_tiny_clip

    d = tmp_path_factory.mktemp("ui-models")
    mlp = write_random_task1(d / "mlp.safetensors", head="mlp", seed=11)
    csra = write_random_task1(d / "csra.safetensors", head="csra", seed=12)
    clip = write_tiny_clip(d / "clip", seed=13)
    return [mlp, csra], Path(clip)


@pytest.fixture(scope="session")
def rg1_uncr():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    if path is None:
        pytest.fail(
            "pydicom-data test file RG1_UNCR.dcm is missing: the GUI tests need the pydicom-data "
            "package (in the test extra): pip install -e '.[test]'",
            pytrace=False,
        )
    return Path(path)


@pytest.fixture
def store(tmp_path):
    from cxrlt_desktop.store import open_store

    s = open_store(f"sqlite:///{tmp_path / 'ui.db'}")
    yield s
    s.close()


@pytest.fixture
def model_settings(ui_models, tmp_path):
    from cxrlt_desktop.settings import Settings

    ckpts, clip = ui_models
    return Settings(
        task1_checkpoints=list(ckpts),
        task1_arch="convnextv2_atto",
        clip_model=clip,
        device="cpu",
        mode="paper",
        batch_size=2,
        reviewer="Dr Test",
    )


@pytest.fixture
def make_window(qtbot, store, tmp_path):
    """Factory: a main window over the test store; jobs are stopped and waited for at teardown."""
    from cxrlt_desktop.ui.app import create_main_window

    windows = []

    def make(settings, **kw):
        kw.setdefault("engine_overrides", {"image_size": SIZE, "cache_dir": tmp_path / "cache"})
        kw.setdefault("first_start_dialog", False)
        kw.setdefault("settings_path", tmp_path / "settings.toml")
        w = create_main_window(store, settings, **kw)
        qtbot.addWidget(w)
        windows.append(w)
        return w

    yield make
    for w in windows:
        if w.jobs.is_running():
            w.jobs.cancel()
            with qtbot.waitSignal(w.jobs.finished, timeout=120_000):
                pass


@pytest.fixture
def make_scored_window(qtbot, make_window, model_settings, tmp_path):
    """Factory: a shown main window that has scanned and scored ``n_phantoms`` phantom studies
    with the test models."""
    from gui_helpers import make_study_folder

    def make(n_phantoms: int):
        folder = make_study_folder(tmp_path / "in", None, n_phantoms=n_phantoms, broken=False)
        window = make_window(model_settings)
        window.show()
        with qtbot.waitSignal(window.jobFinished, timeout=600_000):
            window.open_paths([folder])
        return window

    return make
