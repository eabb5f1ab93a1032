"""``cxrlt demo DIR [--headless]``: the whole product on synthetic studies with DEMO models.

Builds what is missing in DIR (demo DICOM studies in ``DIR/data``, demo models in
``DIR/models``), scans and scores the studies into ``DIR/cxrlt-demo.db``, then opens the GUI
on that library (title bar and banner say DEMO) or, with ``--headless``, prints the top of the
worklist next to the drawn ground truth and checks that phantoms with drawn rare findings lead it.
Nothing outside DIR is touched: the demo has its own database and settings file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from cxrlt_desktop.commands._text import printable

DB_NAME = "cxrlt-demo.db"
SETTINGS_NAME = "settings.toml"
TOP_K = 5


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="show the product on synthetic DEMO studies with DEMO models",
        description=(
            "Build demo studies and demo models in DIR if missing, scan and score them into a "
            "database in DIR, and open the GUI on it (everything marked DEMO). With --headless, "
            "print the top of the worklist instead and exit 1 unless phantoms with drawn rare "
            "findings lead it."
        ),
    )
    p.add_argument("dir", type=Path, help="demo folder (created; reused on the next run)")
    p.add_argument("--headless", action="store_true", help="no window: print the worklist top")
    p.add_argument("--n", type=int, default=48, help="demo images when building them (default 48)")
    p.add_argument("--size", type=int, default=2500, help="demo image height (default 2500)")
    p.add_argument(
        "--models", type=Path, default=None, help="demo models folder (default DIR/models)"
    )
    p.add_argument("--top", type=int, default=10, help="worklist rows to print (default 10)")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare(
    folder: Path, *, n: int = 48, size: int = 2500, models: Path | None = None, log=_say
) -> dict:
    """Build (if missing) data and models, then scan and score; return what the GUI needs.

    Returns a dict with ``store``, ``settings`` (cxrlt_desktop.settings.Settings for the demo
    models), ``engine_overrides``, ``data``, ``models``, ``labels`` (ImageID -> positive classes),
    ``report`` (the demo-model report) and ``score`` (the last ScoreProgress).
    """
    from cxrlt_desktop.demo.models import build_demo_models, engine_config, model_paths
    from cxrlt_desktop.demo.phantoms import read_labels_csv, write_demo_data
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.library.scoring import score_library
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.store import open_store
    from engine.predictor import Predictor

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    models = models or folder / "models"
    if not (data / "labels.csv").is_file():
        t0 = time.perf_counter()
        log(f"[demo] writing {n} synthetic DEMO studies to {data} ...")
        write_demo_data(data, n=n, seed=0, size=size)
        log(f"[demo] demo data written in {time.perf_counter() - t0:.0f} s")
    else:
        log(f"[demo] demo data: {data} (already there)")
    report = build_demo_models(models, log=lambda m: log(f"[demo] {m}"))
    ev = report["eval"]
    log(f"[demo] demo models: {models} (held-out macro AUC {ev['macro_auc_drawn_task1']:.3f})")

    store = open_store(f"sqlite:///{(folder / DB_NAME).resolve()}")
    t0 = time.perf_counter()
    # The patient folders only: labels.csv (the ground truth) is not an image to list.
    records = list(scan(store, sorted(p for p in data.iterdir() if p.is_dir())))
    prog = records[-1] if records else None
    if prog is not None:
        log(
            f"[demo] scanned {data}: {prog.new} new, {prog.unchanged} unchanged, {prog.unusable} unusable"
        )
        for path, reason in prog.problems[:5]:
            log(f"[demo]   {path}: {reason}")
    image_size = int(report["settings"]["image_size"])
    paths = model_paths(models)
    config = engine_config(models, image_size=image_size, cache_dir=folder / "cache")
    thresholds = dict(ev.get("thresholds") or {})
    predictor = Predictor(config)
    last = None
    shown = -1
    for last in score_library(store, predictor, thresholds=thresholds):
        if last.total and last.done != shown and (last.done == last.total or last.done % 8 == 0):
            shown = last.done
            log(f"[demo] scoring {last.done}/{last.total} ({last.failed} failed)")
    if last is not None and last.total == 0:
        log(f"[demo] all {last.already_scored} images already scored")
    log(f"[demo] scored in {time.perf_counter() - t0:.0f} s")
    settings = Settings(
        reviewer="demo",
        task1_checkpoints=[paths["mlp"], paths["csra"]],
        task1_weights=[1.0, 1.5],
        task1_arch="convnextv2_atto",
        clip_model=paths["clip"],
        mode="paper",
        device="cpu",
        batch_size=config.batch_size,
        thresholds=thresholds,
    )
    return {
        "store": store,
        "settings": settings,
        "engine_overrides": {"image_size": image_size, "cache_dir": folder / "cache"},
        "data": data,
        "models": models,
        "labels": read_labels_csv(data / "labels.csv"),
        "report": report,
        "score": last,
    }


def study_truth(labels: dict[str, frozenset[str]], data: Path) -> dict[str, frozenset[str]]:
    """StudyInstanceUID -> the drawn classes of its images (ground truth of the phantoms)."""
    import pydicom

    out: dict[str, set[str]] = {}
    for image_id, positive in labels.items():
        ds = pydicom.dcmread(
            data / image_id, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]
        )
        out.setdefault(str(ds.StudyInstanceUID), set()).update(positive)
    return {k: frozenset(v) for k, v in out.items()}


def headless(ctx: dict, top: int, log=_say) -> int:
    """Print the worklist top with the ground truth; 0 when drawn rare findings lead it."""
    from cxrlt_desktop.library.worklist import query_worklist
    from engine.classes import RARE_CLASSES

    store = ctx["store"]
    rows = query_worklist(store, limit=max(top, TOP_K), show_phi=True)
    truth = study_truth(ctx["labels"], ctx["data"])
    rare_drawn = {uid for uid, lab in truth.items() if lab & set(RARE_CLASSES)}
    log("")
    log("DEMO worklist (synthetic phantoms, DEMO models; highest rare-finding score first)")
    log(
        f"{'#':>2}  {'patient':<12} {'date':<10} {'rare':>6}  {'top findings (model)':<44} drawn (ground truth)"
    )
    for i, r in enumerate(rows[:top], start=1):
        found = ", ".join(f"{f['finding']} {f['probability']:.2f}" for f in r.top_findings[:3])
        drawn = ", ".join(sorted(truth.get(r.study_uid, frozenset()))) or "?"
        mark = "*" if r.study_uid in rare_drawn else " "
        score = "-" if r.rare_score is None else f"{r.rare_score:.2f}"
        log(
            f"{i:>2}{mark} {r.patient:<12} {r.study_date or '':<10} {score:>6}  {found[:44]:<44} {drawn}"
        )
    k = min(TOP_K, len(rare_drawn))
    hits = sum(1 for r in rows[:k] if r.study_uid in rare_drawn)
    ok = k > 0 and hits >= max(1, (k * 3 + 4) // 5)  # at least 60 % of the top k
    log(
        f"\n* = a drawn rare finding ({', '.join(sorted(set(RARE_CLASSES) & set().union(*truth.values())))}). "
        f"{len(rare_drawn)} of {len(truth)} studies have one; the top {k} hold {hits}."
    )
    log(
        f"DEMO CHECK {'PASSED' if ok else 'FAILED'}: phantoms with drawn rare findings "
        f"{'lead' if ok else 'do not lead'} the worklist"
    )
    return 0 if ok else 1


def build_window(ctx: dict, folder: Path):
    """The main window on the demo library (DEMO banner and title forced on), not yet shown."""
    # The GUI is imported only here, by name, as `cxrlt gui` does: Qt stays out of every other
    # code path of the command line (see the import rules in pyproject.toml).
    app_mod = importlib.import_module("cxrlt_desktop.ui.app")
    app_mod.ensure_app()
    return app_mod.create_main_window(
        ctx["store"],
        ctx["settings"],
        settings_path=folder / SETTINGS_NAME,
        engine_overrides=ctx["engine_overrides"],
        demo=True,
        first_start_dialog=False,
    )


def open_gui(ctx: dict, folder: Path) -> int:
    """Open the main window on the demo library and run the event loop."""
    window = build_window(ctx, folder)
    window.show()
    code = importlib.import_module("cxrlt_desktop.ui.app").ensure_app().exec()
    ctx["store"].close()
    return int(code)


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.size < 320:
        print("cxrlt demo: need --n >= 1 and --size >= 320", file=sys.stderr)
        return 2
    folder = Path(args.dir)
    try:
        ctx = prepare(folder, n=args.n, size=args.size, models=args.models)
    except Exception as e:  # one line naming what failed, not a traceback, for `make demo`
        print(
            f"cxrlt demo: {printable(folder)}: {type(e).__name__}: {printable(e)}", file=sys.stderr
        )
        return 1
    if args.headless:
        try:
            return headless(ctx, args.top)
        finally:
            ctx["store"].close()
    return open_gui(ctx, folder)
