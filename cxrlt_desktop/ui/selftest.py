"""``cxrlt gui --self-test``: the whole GUI path, offscreen, with a pass/fail exit status.

Steps: open a folder (a small built-in synthetic one when none is given), scan and score it in
the background with the configured models (or small random-weight ones, marked DEMO), select
the top study, wait for its image, set one verdict and read it back from the store, toggle the
overlay, save PNG screenshots, close cleanly. Exit status 0 only when every step worked.
Its working folder (a temporary directory) is removed after a pass and kept, with its path
printed, after a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SELF_TEST_TIMEOUT_S = 600


def build_synthetic_folder(folder: Path, n: int = 6) -> Path:
    """A small folder of chest studies: demo phantoms when available, else plain synthetic DICOM."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from cxrlt_desktop.demo.phantoms import write_demo_data

        write_demo_data(folder, n=n, seed=0, size=320)
        # The ground-truth CSV is not an image: keep it beside the folder, not in the scan.
        (folder / "labels.csv").replace(folder.parent / "labels.csv")
        return folder
    except ImportError:
        pass
    import numpy as np

    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[0:320, 0:256]
        body = 3000 + 800 * np.sin(xx / 40.0) + 600 * np.cos(yy / 55.0)
        pixels = (body + rng.normal(0, 80, body.shape)).clip(0, 4095).astype(np.uint16)
        write_dicom(
            folder / f"study{i:02d}.dcm",
            pixels,
            bits_stored=12,
            patient_id=f"SELFTEST{i:02d}",
            patient_name=f"Selftest^{i}",
        )
    return folder


def random_models(folder: Path) -> tuple[list[Path], Path]:
    """Random-weight convnextv2_atto CSRA + MLP checkpoints and a tiny CLIP folder."""
    from engine.random_models import write_random_task1, write_tiny_clip

    csra = write_random_task1(folder / "random_csra.safetensors", head="csra", seed=1)
    mlp = write_random_task1(folder / "random_mlp.safetensors", head="mlp", seed=2)
    clip = write_tiny_clip(folder / "random_clip", seed=3)
    return [mlp, csra], Path(clip)


def _first_task1_finding(window) -> str:
    """The highest-scoring Task 1 finding other than Normal (its attention map is shown)."""
    from engine.classes import TASK1_CLASSES

    entry = window.current_image()
    if entry is None or entry.probs is None:
        return TASK1_CLASSES[1]
    i = 1 + int(entry.probs[1 : len(TASK1_CLASSES)].argmax())
    return TASK1_CLASSES[i]


class _Steps:
    """Prints one ``[ok]`` / ``[FAIL]`` line per step and remembers the failed ones."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.failures: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> bool:
        self.say(f"[{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
        if not ok:
            self.failures.append(name)
        return ok


def _wait(signal, timeout_s: float, predicate=None) -> tuple[bool, tuple]:
    """Run the event loop until ``signal`` fires (with arguments ``predicate`` accepts) or the
    time is up; (whether it fired, its arguments)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    got: list[tuple] = []

    def on(*args):
        if predicate is None or predicate(*args):
            got.append(args)
            loop.quit()

    signal.connect(on)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(on)
    return bool(got), (got[0] if got else ())


def _self_test_settings(tmp: Path, say: Callable[[str], None]):
    """(settings, engine overrides, demo): the user's settings, or random-weight demo models
    when none are configured."""
    from cxrlt_desktop.settings import Settings, SettingsError

    try:
        settings = Settings.load()
    except SettingsError as exc:
        say(f"settings ignored: {exc}")
        settings = Settings()
    overrides: dict = {"cache_dir": tmp / "cache"}
    demo = None
    if not (settings.task1_checkpoints or settings.clip_model):
        ckpts, clip = random_models(tmp / "models")
        settings = Settings(
            task1_checkpoints=ckpts,
            task1_arch="convnextv2_atto",
            clip_model=clip,
            mode="paper",
            device="cpu",
            batch_size=4,
            reviewer="self-test",
        )
        overrides["image_size"] = 64
        demo = True
        say("models: none configured, using random-weight models (DEMO, not for clinical use)")
    if not settings.reviewer:
        settings.reviewer = "self-test"
    return settings, overrides, demo


def _check_scoring(window, folder: Path, step: _Steps) -> None:
    """Scan and score the folder; the worklist comes out ordered by the rare-finding score."""
    t0 = time.perf_counter()
    window.open_paths([folder])
    done, args = _wait(window.jobFinished, SELF_TEST_TIMEOUT_S)
    result = args[0] if args else None
    step(
        "scan and score",
        done and result is not None and result.ok and result.scored > 0,
        f"{getattr(result, 'scored', 0)} scored, {getattr(result, 'failed', 0)} failed, "
        f"{len(getattr(result, 'problems', []))} problems, {time.perf_counter() - t0:.1f} s",
    )
    scores = [r.rare_score for r in window.worklist_model.rows()]
    known = [s for s in scores if s is not None]
    step(
        "worklist ordered by rare-finding score",
        bool(known) and known == sorted(known, reverse=True),
        f"{len(scores)} studies, top {known[0] if known else None}",
    )


def _check_review(window, store, step: _Steps) -> None:
    """Open the top study, set a verdict and read it back, toggle the attention overlay."""
    from cxrlt_desktop.library.reviews import image_verdicts

    window.select_row(0)
    shown, _ = _wait(window.imageDisplayed, 60)
    step("top study opened and displayed", shown and window.viewer.has_image())
    entry = window.current_image()
    if entry is not None:
        finding = window.findings.current_finding() or "Normal"
        window.findings.request_verdict("present")
        stored = image_verdicts(store, entry.image_id).get(finding)
        step(
            "verdict stored",
            stored is not None and stored.verdict == "present",
            f"{finding} = {getattr(stored, 'verdict', None)}",
        )
    if entry is not None and entry.attention is not None:
        window.findings.select_finding(_first_task1_finding(window))
        window.actions_by_id["toggle_overlay"].trigger()
        on = window.viewer.overlay_visible()
        window.actions_by_id["toggle_overlay"].trigger()
        step("attention overlay toggles", on and not window.viewer.overlay_visible())


def _save_screenshots(window, app, screenshots: Path, step: _Steps) -> None:
    screenshots.mkdir(parents=True, exist_ok=True)
    app.processEvents()
    ok = window.grab().save(str(screenshots / "main_window.png"))
    if window.current_image() is not None:
        window.findings.select_finding(_first_task1_finding(window))
        window.image_panel.overlay_box.setChecked(True)
    app.processEvents()
    ok = window.grab().save(str(screenshots / "main_window_overlay.png")) and ok
    step("screenshots", ok, str(screenshots))


def run_self_test(
    folder: Path | None = None,
    screenshots: Path | None = None,
    db_url: str | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run every step; print one line per step; 0 when all passed, 1 otherwise."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window, ensure_app

    app = ensure_app()
    tmp = Path(tempfile.mkdtemp(prefix="cxrlt-selftest-"))
    step = _Steps(say)
    settings, overrides, demo = _self_test_settings(tmp, say)
    if folder is None:
        folder = build_synthetic_folder(tmp / "studies")
        say(f"folder: built-in synthetic studies in {folder}")
    store = open_store(db_url or f"sqlite:///{tmp / 'selftest.db'}")
    window = create_main_window(
        store,
        settings,
        settings_path=tmp / "settings.toml",
        engine_overrides=overrides,
        demo=demo,
        first_start_dialog=False,
    )
    window.resize(1400, 860)
    window.show()
    app.processEvents()
    try:
        _check_scoring(window, folder, step)
        if window.worklist_model.rowCount():
            _check_review(window, store, step)
        else:
            step("top study opened and displayed", False, "the worklist is empty")
        if screenshots is not None:
            _save_screenshots(window, app, screenshots, step)
    finally:
        window.close()
        if window.jobs.is_running():
            window.jobs.cancel()
            window.jobs.wait()
            app.processEvents()
        store.close()
    if step.failures:
        # Keep the working folder (database, models, studies) for whoever looks into the failure.
        say(f"self-test working files kept for inspection: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    say("self-test " + ("passed" if not step.failures else f"FAILED: {', '.join(step.failures)}"))
    return 0 if not step.failures else 1


__all__ = ["build_synthetic_folder", "random_models", "run_self_test"]
