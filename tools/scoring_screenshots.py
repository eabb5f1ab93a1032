"""Screenshots of progressive scoring in the window for docs/gui.md (offscreen, by hand):

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/scoring_screenshots.py docs/screenshots

A folder of demo phantoms is opened in a window whose models are random-weight test models
(ConvNeXtV2-atto CSRA + MLP at 64 px and a tiny CLIP, on the CPU: the default policy there is
progressive). Shot while the paper pass runs (some rows final, the rest provisional in italics,
the status bar naming the pass), and the Settings dialog's Engine tab with the scoring policy.
The scores only show where they go.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reading_screenshots import _save  # noqa: E402


def main(out: Path) -> int:
    from PySide6.QtWidgets import QTabWidget

    from cxrlt_desktop.demo.phantoms import write_demo_data
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window, ensure_app
    from cxrlt_desktop.ui.settings_dialog import SettingsDialog
    from engine.random_models import write_random_task1, write_tiny_clip

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scoring-shots-") as d:
        tmp = Path(d)
        os.environ["CXRLT_DATA_DIR"] = str(tmp / "data")
        write_demo_data(tmp / "folder", n=24, seed=5, size=512)
        (tmp / "folder" / "labels.csv").unlink(missing_ok=True)
        mlp = write_random_task1(tmp / "mlp.safetensors", head="mlp", seed=1)
        csra = write_random_task1(tmp / "csra.safetensors", head="csra", seed=2)
        clip = write_tiny_clip(tmp / "clip", seed=3)
        settings = Settings(
            reviewer="Dr Demo",
            task1_checkpoints=[mlp, csra],
            task1_arch="convnextv2_atto",
            clip_model=Path(clip),
            batch_size=1,
        )
        settings.hanging = {"layout": "single", "docks": []}
        store = open_store(f"sqlite:///{tmp / 'lib.db'}")
        app = ensure_app()
        window = create_main_window(
            store,
            settings,
            first_start_dialog=False,
            settings_path=tmp / "settings.toml",
            engine_overrides={"image_size": 64, "cache_dir": tmp / "cache"},
            demo=False,
        )
        window.resize(1600, 900)
        window.show()
        seen: list = []
        window.jobs.progress.connect(lambda p: seen.append(p))
        done: list = []
        window.jobFinished.connect(lambda r: done.append(r))
        window.open_paths([tmp / "folder"])
        end = time.monotonic() + 600
        shot = False
        while not done and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)
            last = seen[-1] if seen else None
            if not shot and last is not None and last.text == "Paper pass" and last.done >= 8:
                window.refresh_worklist()
                for _ in range(50):
                    app.processEvents()
                    time.sleep(0.01)
                _save(window, out / "scoring_progressive.png")
                shot = True
        if not shot:
            raise SystemExit("the paper pass was never seen")
        dlg = SettingsDialog(settings, window)
        tabs = dlg.findChild(QTabWidget)
        for k in range(tabs.count()):
            if tabs.tabText(k) == "Engine":
                tabs.setCurrentIndex(k)
        dlg.show()
        app.processEvents()
        _save(dlg, out / "settings_engine.png")
        dlg.close()
        window.close()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
