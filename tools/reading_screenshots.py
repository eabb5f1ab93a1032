"""Screenshots of the reading tools for docs/gui.md (offscreen, by hand):

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/reading_screenshots.py docs/screenshots

The current image is pydicom-data's RG1_UNCR (a real chest PA); its prior is the same radiograph
filed four years earlier for the same patient (a copy with a new study date and UIDs). The copy
used as the current image is given an ImagerPixelSpacing of 0.16 mm and an estimated
radiographic magnification factor of 1.10 (RG1's own PixelSpacing is 0), so lengths show as
magnification-corrected millimetres. Both images are scored by a random-weight test model at
64 px: the scores only show where they go. Images wider than 1,400 px are scaled down.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CURRENT = "1.2.826.0.1.3680043.8.498.77001"
PRIOR = "1.2.826.0.1.3680043.8.498.77002"
MAX_WIDTH = 1400
PANEL_WIDTH = 640  # the image panel alone (distance, angle)


def _copy(src: Path, out: Path, study: str, date: str, **extra) -> Path:
    import pydicom

    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = study + ".1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = study + ".1.1"
    ds.StudyDate = ds.SeriesDate = date
    for k, v in extra.items():
        setattr(ds, k, v)
    if extra:
        del ds.PixelSpacing
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def _save(widget, path: Path, width: int = MAX_WIDTH) -> None:
    from PySide6.QtCore import Qt

    img = widget.grab().toImage()
    if img.width() > width:
        img = img.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
    if not img.save(str(path)):
        raise SystemExit(f"could not write {path}")
    from PIL import Image

    # 256 colours: a third of the size, the grey image unchanged to the eye
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    print(path, img.width(), "x", img.height())


def _wait(app, signal_owner_check, timeout: float = 60.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not signal_owner_check():
        if time.monotonic() > end:
            raise SystemExit("timed out")
        app.processEvents()
        time.sleep(0.01)


def _settings():
    from cxrlt_desktop.settings import Settings

    s = Settings(reviewer="Dr Demo")
    s.hanging = {"layout": "single", "docks": []}  # the image gets the space
    return s


def main(out: Path) -> int:
    from pydicom.data import get_testdata_file

    from cxrlt_desktop.library import scan, score_library
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window, ensure_app
    from engine.predictor import EngineConfig, Predictor
    from engine.random_models import write_random_task1

    out.mkdir(parents=True, exist_ok=True)
    rg1 = Path(get_testdata_file("RG1_UNCR.dcm", download=False))
    with tempfile.TemporaryDirectory(prefix="reading-shots-") as d:
        tmp = Path(d)
        os.environ["CXRLT_DATA_DIR"] = str(tmp / "data")
        lib = tmp / "library"
        _copy(
            rg1,
            lib / "current" / "cr.dcm",
            CURRENT,
            "20230515",
            ImagerPixelSpacing=[0.16, 0.16],
            EstimatedRadiographicMagnificationFactor=1.1,
        )
        _copy(rg1, lib / "prior" / "cr.dcm", PRIOR, "20190304")
        store = open_store(f"sqlite:///{tmp / 'lib.db'}")
        for _ in scan(store, [lib]):
            pass
        ckpt = write_random_task1(tmp / "csra.safetensors", head="csra", seed=3)
        predictor = Predictor(
            EngineConfig(
                task1_checkpoints=[ckpt],
                task1_arch="convnextv2_atto",
                mode="fast",
                image_size=64,
                device="cpu",
                batch_size=2,
            )
        )
        for _ in score_library(store, predictor):
            pass
        app = ensure_app()
        window = create_main_window(
            store,
            _settings(),
            first_start_dialog=False,
            settings_path=tmp / "settings.toml",
        )
        window.resize(1920, 1050)
        window.show()
        shown = []
        window.imageDisplayed.connect(lambda i: shown.append(i))
        window.select_study(CURRENT)
        _wait(app, lambda: shown)
        reading = window.reading
        _save(window, out / "reading_single.png")

        prior = []
        reading.prior.priorShown.connect(lambda u: prior.append(u))
        reading.set_comparison(True)
        _wait(app, lambda: prior)
        for _ in range(20):
            app.processEvents()
        _save(window, out / "reading_comparison.png")

        reading.set_comparison(False)
        layer = reading.measure
        viewer = window.viewer
        tools = {
            "distance": [(760, 600), (1060, 600)],
            "angle": [(330, 1380), (135, 1560), (170, 1290)],
            "cobb": [(800, 470), (1010, 505), (800, 1330), (1010, 1280)],
            "ctr": [(640, 1300), (1430, 1300), (140, 1420), (1700, 1420)],
        }
        for _ in range(5):
            app.processEvents()
        viewer.fit()
        for kind, points in tools.items():
            for m in layer.measurements():  # one tool per picture
                layer.selected = m.id
                layer.delete_selected()
            layer.start(kind)
            for x, y in points:
                layer._on_click(*viewer.to_display(x, y))
            for _ in range(10):
                app.processEvents()
            target = window if kind in ("cobb", "ctr") else window.image_panel
            if kind in ("cobb", "ctr"):
                finding = "Scoliosis" if kind == "cobb" else "cardiomegaly"
                window.findings.select_finding(finding, emit=False)
                row = window.findings.row(finding)
                scroll = row.parent()
                while scroll is not None and not hasattr(scroll, "ensureWidgetVisible"):
                    scroll = scroll.parent()
                if scroll is not None:
                    scroll.ensureWidgetVisible(row)
                for _ in range(10):
                    app.processEvents()
            _save(
                target, out / f"measure_{kind}.png", MAX_WIDTH if target is window else PANEL_WIDTH
            )
            for m in layer.measurements():
                print(m.kind, m.text)
        window.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
