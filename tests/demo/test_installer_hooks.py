"""The PyInstaller hooks collect what the frozen app needs (checked without building)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("PyInstaller")

HOOKS = Path(__file__).resolve().parents[2] / "installer" / "hooks"


def _hook(name: str) -> dict:
    return runpy.run_path(str(HOOKS / f"hook-{name}.py"))


def _dests(datas) -> list[str]:
    return [f"{Path(dest).as_posix()}/{Path(src).name}" for src, dest in datas]


def test_open_clip_configs_and_vocab():
    h = _hook("open_clip")
    d = _dests(h["datas"])
    assert "open_clip/bpe_simple_vocab_16e6.txt.gz" in d
    assert "open_clip/model_configs/ViT-L-14.json" in d
    assert "open_clip.factory" in h["hiddenimports"]


def test_pylibjpeg_entry_point_metadata():
    h = _hook("pylibjpeg")
    srcs = [Path(src) for src, _ in h["datas"]]
    names = {p.name for p in srcs}
    assert any(n.startswith("pylibjpeg_openjpeg-") and n.endswith(".dist-info") for n in names)
    assert any(n.startswith("pylibjpeg_rle-") and n.endswith(".dist-info") for n in names)
    # The entry points that route JPEG 2000 to openjpeg live in that metadata.
    ep = next(p for p in srcs if p.name.startswith("pylibjpeg_openjpeg-")) / "entry_points.txt"
    assert "1.2.840.10008.1.2.4.90" in ep.read_text()
    assert {"openjpeg", "rle"} <= set(h["hiddenimports"])


def test_pydicom_pixel_plugins():
    h = _hook("pydicom.pixels")
    mods = set(h["hiddenimports"])
    assert {
        "pydicom.pixels.decoders.pylibjpeg",
        "pydicom.pixels.decoders.gdcm",
        "pydicom.pixels.encoders.pylibjpeg",
    } <= mods


def test_gdcm_libraries_and_dictionaries():
    h = _hook("gdcm")
    assert "_gdcm._gdcmswig" in h["hiddenimports"]  # the SWIG extension module
    assert any(Path(src).name.startswith("libgdcmCommon") for src, _ in h["binaries"])
    assert any(Path(src).name == "Part3.xml" for src, _ in h["datas"])


def test_app_submodules_migrations_and_resources():
    h = _hook("cxrlt_desktop")
    mods = set(h["hiddenimports"])
    # (engine/training are collected the same way; not asserted here because pytest puts tests/
    # on sys.path, where tests/engine shadows the engine package in PyInstaller's subprocess.)
    assert {
        "cxrlt_desktop.cli",
        "cxrlt_desktop.commands.demo_data",
        "cxrlt_desktop.demo.phantoms",
        "cxrlt_desktop.store.models",
    } <= mods
    d = _dests(h["datas"])
    assert "cxrlt_desktop/store/migrations/env.py" in d
    assert any(
        x.startswith("cxrlt_desktop/store/migrations/versions/") and x.endswith(".py") for x in d
    )
    r = _dests(_hook("resources")["datas"])
    assert "resources/classes.csv" in r and "resources/prompts.json" in r


def test_smoke_test_refuses_a_missing_executable(tmp_path, capsys):
    smoke = runpy.run_path(str(HOOKS.parent / "smoke_test.py"))
    assert smoke["main"]([str(tmp_path / "nope" / "cxrlt")]) == 2
    assert "no such executable" in capsys.readouterr().err


def test_openvino_plugins_and_onnx_frontend():
    h = _hook("openvino")
    libs = {Path(src).name for src, _ in h["binaries"]}
    # the CPU device plugin and the ONNX reader are loaded by file name at run time
    assert "libopenvino_intel_cpu_plugin.so" in libs or "openvino_intel_cpu_plugin.dll" in libs
    assert any("openvino_onnx_frontend" in n for n in libs)
    assert all(Path(dest).as_posix().startswith("openvino") for _, dest in h["binaries"])
    assert "openvino.frontend.onnx" in h["hiddenimports"]
    assert not any(m.startswith("openvino.frontend.tensorflow") for m in h["hiddenimports"])
