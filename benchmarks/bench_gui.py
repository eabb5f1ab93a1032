"""GUI benchmark (by hand, not in CI): open-to-display latency, worklist sort, memory with models.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py [--skip-memory]
        [--clip ViT-L-14|ViT-B-16|none] [--studies 30000] [--json OUT.json]

1. Open-to-display of a 2,500 x 2,000 16-bit DICOM, warm (imports done, file in the page cache):
   (a) the viewer alone: read_display + ImageViewer.set_image + paint;
   (b) the real path: select a study in the main window's worklist until ``imageDisplayed``
       (decode in the decoder thread, queued signal, set_image), over several different files.
2. Sort of a 30,000-study worklist (real store, real query): the first page, sorting by date
   (loads all 30,000 rows in a worker thread, then sorts; also how long the GUI thread was
   busy), re-sorting the loaded rows by description, and back to priority order (in memory).
4. Open-to-display in the comparison layout (--skip-comparison to leave out): current + prior
   side by side, each 2,500 x 2,000 16-bit, warm: select a study until both its image
   (``imageDisplayed``) and the patient's prior (``PriorViewport.priorShown``) are on screen;
   (a) cold: a study picked from the worklist, neither image decoded before (the loaders'
   caches emptied); (b) reading down the worklist: PgDown after a 1 s look at the study above,
   during which the next study and its prior were read ahead (ui/read_ahead.py).
3. Resident memory (VmRSS) of the process with the window open, then with both Task 1 models
   (convnextv2_base, random weights, CSRA + MLP) and a CLIP model (ViT-L-14 random weights, the
   size WhyXrayCLIP has) loaded by the engine on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _big_dicom(path: Path, seed: int) -> Path:
    import numpy as np

    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(seed)
    rows, cols = 2500, 2000
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    img = 20000 + 15000 * np.sin(x / 300.0) * np.cos(y / 400.0)
    img += rng.normal(0, 500, img.shape).astype(np.float32)
    return write_dicom(
        path,
        img.clip(0, 65535).astype(np.uint16),
        bits_stored=16,
        patient_id=f"BENCH{seed:03d}",
        window=(20000.0, 30000.0),
    )


def bench_display(tmp: Path, repeats: int = 10) -> dict:
    from PySide6.QtWidgets import QApplication

    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window, ensure_app
    from cxrlt_desktop.ui.viewer import ImageViewer
    from engine.imageio import read_display

    app = ensure_app()
    folder = tmp / "big"
    files = [_big_dicom(folder / f"img{i:02d}.dcm", i) for i in range(repeats + 1)]

    viewer = ImageViewer()
    viewer.resize(900, 1000)
    viewer.show()
    app.processEvents()
    read_display(files[0])  # warm: imports, decoder plugins
    viewer.set_image(read_display(files[0]))
    app.processEvents()
    decode, show, total = [], [], []
    for f in files[1:]:
        t0 = time.perf_counter()
        d = read_display(f)
        t1 = time.perf_counter()
        viewer.set_image(d)
        viewer.repaint()
        QApplication.processEvents()
        t2 = time.perf_counter()
        decode.append((t1 - t0) * 1000)
        show.append((t2 - t1) * 1000)
        total.append((t2 - t0) * 1000)
    viewer.close()

    # The window path: scan the files (no models), then open each study from the worklist.
    store = open_store(f"sqlite:///{tmp / 'display.db'}")
    window = create_main_window(store, Settings(reviewer="bench"), first_start_dialog=False)
    window.resize(1500, 950)
    window.show()
    done = []
    window.jobFinished.connect(lambda r: done.append(r))
    window.open_paths([folder])
    while not done:
        app.processEvents()
        time.sleep(0.005)
    if not done[0].ok:
        raise SystemExit(f"bench_gui: the scan failed: {done[0].error}")
    window_ms = []
    model = window.worklist_model
    from PySide6.QtCore import QEventLoop

    for row in range(model.rowCount()):
        # Wait in an event loop as the app does (a busy processEvents loop would steal the
        # GIL from the decoder thread and inflate the figure).
        loop = QEventLoop()
        window.imageDisplayed.connect(loop.quit)
        t0 = time.perf_counter()
        window.select_row(row)
        loop.exec()
        window.imageDisplayed.disconnect(loop.quit)
        window.viewer.repaint()
        window_ms.append((time.perf_counter() - t0) * 1000)
    window.close()
    store.close()
    warm = window_ms[1:]  # the first open also warms the decoder thread
    return {
        "image": "2500 x 2000, 16-bit, uncompressed",
        "viewer_decode_ms_median": statistics.median(decode),
        "viewer_show_ms_median": statistics.median(show),
        "viewer_total_ms_median": statistics.median(total),
        "viewer_total_ms_max": max(total),
        "window_select_to_display_ms_median": statistics.median(warm),
        "window_select_to_display_ms_max": max(warm),
        "n": len(warm),
    }


def _patient_dicom(path: Path, seed: int, patient: str, date: str, study_uid: str) -> Path:
    import numpy as np

    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:2500, 0:2000].astype(np.float32)
    img = 20000 + 15000 * np.sin(x / (250.0 + seed)) * np.cos(y / 400.0)
    img += rng.normal(0, 500, img.shape).astype(np.float32)
    return write_dicom(
        path,
        img.clip(0, 65535).astype(np.uint16),
        bits_stored=16,
        patient_id=patient,
        study_uid=study_uid,
        study_date=date,
        window=(20000.0, 30000.0),
    )


def bench_comparison(tmp: Path, patients: int = 8) -> dict:
    """Select-to-display of the current image and its prior side by side (see the docstring)."""
    from pydicom.uid import generate_uid
    from PySide6.QtCore import QEventLoop, QTimer

    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window, ensure_app

    app = ensure_app()
    folder = tmp / "pairs"
    current = []
    for i in range(patients):
        uid = generate_uid()
        current.append(uid)
        _patient_dicom(folder / f"p{i}" / "cur.dcm", 2 * i, f"PAIR{i:03d}", "20240301", uid)
        _patient_dicom(
            folder / f"p{i}" / "prior.dcm", 2 * i + 1, f"PAIR{i:03d}", "20210115", generate_uid()
        )
    store = open_store(f"sqlite:///{tmp / 'pairs.db'}")
    settings = Settings(reviewer="bench")
    settings.hanging = {"layout": "comparison", "docks": []}
    window = create_main_window(
        store, settings, first_start_dialog=False, settings_path=tmp / "bench-settings.toml"
    )
    window.resize(1800, 1000)
    window.show()
    done = []
    window.jobFinished.connect(lambda r: done.append(r))
    window.open_paths([folder])
    while not done:
        app.processEvents()
        time.sleep(0.005)
    if not done[0].ok:
        raise SystemExit(f"bench_gui: the scan failed: {done[0].error}")
    prior = window.reading.prior

    def open_both(action) -> float:  # noqa: ANN001
        seen: set[str] = set()
        loop = QEventLoop()

        def mark(what: str) -> None:
            seen.add(what)
            if seen == {"current", "prior"}:
                loop.quit()

        c1 = window.imageDisplayed.connect(lambda _i: mark("current"))
        c2 = prior.priorShown.connect(lambda _u: mark("prior"))
        QTimer.singleShot(30_000, loop.quit)
        t0 = time.perf_counter()
        action()
        if seen != {"current", "prior"}:
            loop.exec()
        window.viewer.repaint()
        prior.viewer.repaint()
        ms = (time.perf_counter() - t0) * 1000
        window.imageDisplayed.disconnect(c1)
        prior.priorShown.disconnect(c2)
        if seen != {"current", "prior"}:
            raise SystemExit(f"bench_gui: comparison not shown ({sorted(seen)})")
        return ms

    def settle(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.005)

    cold = []
    for uid in current:
        window.image_loader._cache.clear()  # nothing decoded ahead
        prior.loader._cache.clear()
        cold.append(open_both(lambda u=uid: window.select_study(u)))
        settle(0.2)
    # reading down the worklist: the rows of the current studies, in worklist order
    model = window.worklist_model
    rows = sorted(model.row_for_uid(u) for u in current)
    ahead = []
    window.select_row(rows[0])
    settle(1.0)
    for r in rows[1:]:
        if window.worklist_panel.next_uid() != model.study_uid(r):
            window.select_row(r - 1)  # a prior row lies between: start from the row above
            settle(1.0)
        ahead.append(open_both(lambda: window.worklist_panel.step(1)))
        settle(1.0)  # the reader looks at it; the next one is read ahead meanwhile
    window.close()
    store.close()
    cold = cold[1:]  # the first open also warms both decoder threads
    return {
        "images": "current + prior, each 2500 x 2000, 16-bit, uncompressed",
        "select_to_both_displayed_ms_median": statistics.median(cold),
        "select_to_both_displayed_ms_max": max(cold),
        "n": len(cold),
        "pgdown_read_ahead_ms_median": statistics.median(ahead),
        "pgdown_read_ahead_ms_max": max(ahead),
        "n_pgdown": len(ahead),
    }


def _fill_worklist(store, n: int) -> None:
    from cxrlt_desktop.store.models import Patient, Study

    with store.session(write=True) as s, s.begin():
        patients = [Patient(key=f"id:P{i:06d}", patient_id=f"P{i:06d}") for i in range(n)]
        s.add_all(patients)
        s.flush()
        studies = []
        for i, p in enumerate(patients):
            score = (i * 7919 % n) / 1000.0
            studies.append(
                Study(
                    patient_id=p.id,
                    study_uid=f"1.2.826.0.1.{i}",
                    study_date=f"20{10 + i % 15:02d}{1 + i % 12:02d}{1 + i % 28:02d}",
                    description=("CHEST PA", "CHEST AP", "THORAX LAT", "CHEST PORTABLE")[i % 4],
                    rare_score=score,
                    priority=score,
                    n_images=3,
                    n_scored=3,
                    n_above=int(score >= 1.0),
                    top_findings=[
                        {
                            "finding": "Pneumothorax",
                            "probability": min(score / 30, 1.0),
                            "threshold": 0.5,
                        },
                        {"finding": "Mass", "probability": 0.2, "threshold": 0.5},
                    ],
                )
            )
        s.add_all(studies)


def bench_sort(tmp: Path, n: int) -> dict:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QTableView

    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import ensure_app
    from cxrlt_desktop.ui.worklist_model import COLUMNS, WorklistModel

    app = ensure_app()
    store = open_store(f"sqlite:///{tmp / 'worklist.db'}")
    t0 = time.perf_counter()
    _fill_worklist(store, n)
    fill_s = time.perf_counter() - t0
    model = WorklistModel(store)
    view = QTableView()
    view.setModel(model)
    view.resize(900, 700)
    view.show()
    t0 = time.perf_counter()
    model.refresh()
    app.processEvents()
    first_page = (time.perf_counter() - t0) * 1000
    date_col = COLUMNS.index("study_date")
    desc_col = COLUMNS.index("description")
    from PySide6.QtCore import QEventLoop

    loop = QEventLoop()
    model.refreshed.connect(loop.quit)
    # A reader scrolled down 12,000 rows; scores stream in, so the list refreshes every 700 ms.
    scrolled = min(12_000, n - 1)
    while model.rowCount() < scrolled and model.canFetchMore():
        model.fetchMore()
    refresh_busy, refresh_total, applied = [], [], []
    apply = model._apply_refresh

    def timed_apply(*a):  # noqa: ANN002, ANN202 - the GUI-thread part of a background refresh
        t = time.perf_counter()
        apply(*a)
        applied.append((time.perf_counter() - t) * 1000)

    model._apply_refresh = timed_apply
    for _ in range(3):
        t0 = time.perf_counter()
        model.refresh_async()
        refresh_busy.append((time.perf_counter() - t0) * 1000)
        loop.exec()
        refresh_total.append((time.perf_counter() - t0) * 1000)
    model._apply_refresh = apply
    t0 = time.perf_counter()
    model.sort(date_col, Qt.SortOrder.AscendingOrder)  # loads all rows in a worker thread
    gui_busy = (time.perf_counter() - t0) * 1000
    loop.exec()
    model.refreshed.disconnect(loop.quit)
    sort_load = (time.perf_counter() - t0) * 1000
    assert model.rowCount() == n
    resort = []
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder) * 3:
        t0 = time.perf_counter()
        model.sort(desc_col, order)
        app.processEvents()
        resort.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    model.sort(0, Qt.SortOrder.DescendingOrder)
    app.processEvents()
    back = (time.perf_counter() - t0) * 1000
    view.close()
    store.close()
    return {
        "studies": n,
        "fill_s": fill_s,
        "first_page_ms": first_page,
        "scrolled_rows": scrolled,
        "refresh_of_scrolled_rows_gui_thread_busy_ms_max": max(refresh_busy),
        "refresh_of_scrolled_rows_applying_rows_ms_max": max(applied),
        "refresh_of_scrolled_rows_until_shown_ms_median": statistics.median(refresh_total),
        "sort_by_date_incl_loading_all_ms": sort_load,
        "gui_thread_busy_in_that_sort_ms": gui_busy,
        "resort_loaded_rows_ms_median": statistics.median(resort),
        "back_to_priority_in_memory_ms": back,
    }


def _write_clip_folder(folder: Path, name: str) -> Path:
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg = open_clip.get_model_config(name)
    model = open_clip.create_model(name, pretrained=None)
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": cfg,
                "preprocess_cfg": {
                    "mean": [0.48145466, 0.4578275, 0.40821073],
                    "std": [0.26862954, 0.26130258, 0.27577711],
                },
            }
        )
    )
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    del model
    return folder


def bench_memory(tmp: Path, clip_name: str) -> dict:
    """Write the models here, then measure in a fresh process (a clean baseline)."""
    import subprocess

    from engine.random_models import write_random_task1

    mdir = tmp / "models"
    write_random_task1(mdir / "csra.safetensors", head="csra", arch="convnextv2_base")
    write_random_task1(mdir / "mlp.safetensors", head="mlp", arch="convnextv2_base")
    if clip_name != "none":
        _write_clip_folder(mdir / "clip", clip_name)
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(mdir), "--clip", clip_name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["clip"] = clip_name
    return result


def memory_child(mdir: Path, clip_name: str) -> dict:
    import gc

    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window, ensure_app

    tmp_dir = tempfile.TemporaryDirectory(prefix="bench-gui-mem-")
    tmp = Path(tmp_dir.name)
    app = ensure_app()
    rss_start = rss_mib()
    store = open_store(f"sqlite:///{tmp / 'mem.db'}")
    window = create_main_window(store, Settings(reviewer="bench"), first_start_dialog=False)
    window.show()
    app.processEvents()
    rss_window = rss_mib()
    from engine.predictor import EngineConfig, Predictor

    t0 = time.perf_counter()
    pred = Predictor(
        EngineConfig(
            task1_checkpoints=[mdir / "mlp.safetensors", mdir / "csra.safetensors"],
            task1_arch="convnextv2_base",
            clip_model=(mdir / "clip") if clip_name != "none" else None,
            device="cpu",
            cache_dir=tmp / "cache",
        )
    )
    load_s = time.perf_counter() - t0
    gc.collect()
    rss_loaded = rss_mib()
    window.close()
    store.close()
    models = [f"{m.role} {m.arch}" for m in pred.models]
    del pred
    tmp_dir.cleanup()
    return {
        "rss_qapplication_mib": rss_start,
        "rss_window_mib": rss_window,
        "rss_with_models_mib": rss_loaded,
        "models_load_s_incl_prompt_embeddings": load_s,
        "models": models,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--studies", type=int, default=30_000)
    ap.add_argument("--clip", default="ViT-L-14", help="open_clip model name, or none")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-display", action="store_true")
    ap.add_argument("--skip-sort", action="store_true")
    ap.add_argument("--skip-comparison", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.clip)))
        return 0
    out: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-gui-") as d:
        tmp = Path(d)
        os.environ.setdefault("CXRLT_DATA_DIR", str(tmp / "data"))
        if not args.skip_display:
            out["display"] = bench_display(tmp)
            print(json.dumps({"display": out["display"]}, indent=1), flush=True)
        if not args.skip_comparison:
            out["comparison"] = bench_comparison(tmp)
            print(json.dumps({"comparison": out["comparison"]}, indent=1), flush=True)
        if not args.skip_sort:
            out["sort"] = bench_sort(tmp, args.studies)
            print(json.dumps({"sort": out["sort"]}, indent=1), flush=True)
        if not args.skip_memory:
            out["memory"] = bench_memory(tmp, args.clip)
            print(json.dumps({"memory": out["memory"]}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
