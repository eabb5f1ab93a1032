"""Library benchmarks (run by hand, not in CI).

1. Scan throughput: ``cxrlt_desktop.library.scanning.scan`` over N synthetic DICOM files (256 x 256,
   RLE-compressed blank pixels so 10,000 files fit in ~60 MB; the scan reads headers only),
   first scan (every header read and inserted) and rescan (nothing changed). Target >= 1,000
   files/s on 2 cores.
2. Worklist latency: a store bulk-filled with 100,000 scored images in 30,000 studies (rows
   inserted directly; probabilities drawn from Beta(0.3, 5) so that ~1-2 % of findings are
   above threshold, like real data), then ``query_worklist(limit=100)`` ordered by rare-finding
   score, with and without a finding filter and the status filter. Target <= 50 ms.

Usage::

    .venv/bin/python benchmarks/bench_library.py [--files 10000] [--images 100000]
        [--studies 30000] [--workdir DIR] [--skip-scan] [--skip-worklist]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_files(folder: Path, n: int) -> None:
    from pydicom.uid import RLELossless, generate_uid

    from engine.dicomwrite import make_dataset

    ds = make_dataset(np.zeros((256, 256), np.uint8))
    ds.compress(RLELossless)
    t0 = time.perf_counter()
    for i in range(n):
        if i % 3 == 0:
            study, series = generate_uid(), generate_uid()
            ds.PatientID = f"BENCH{i // 9:06d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        sub = folder / f"{i // 1000:02d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        ds.save_as(sub / f"im{i:06d}.dcm", enforce_file_format=True)
    print(f"wrote {n} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def bench_scan(work: Path, n: int) -> None:
    from cxrlt_desktop.store import open_store

    folder = work / "files"
    if not folder.exists():
        write_files(folder, n)
    db = work / "scan.db"
    for workers in (1, 2):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        store = open_store(f"sqlite:///{db}")
        _scan_twice(store, folder, workers)
        store.close()


def _scan_twice(store, folder: Path, workers: int) -> None:  # noqa: ANN001
    from cxrlt_desktop.library.scanning import scan

    for label in (f"first scan, workers={workers}", "rescan (unchanged)"):
        t0 = time.perf_counter()
        last = list(scan(store, [folder], workers=workers))[-1]
        dt = time.perf_counter() - t0
        print(
            f"{label}: {last.seen} files in {dt:.2f} s = {last.seen / dt:,.0f} files/s "
            f"(new {last.new}, unusable {last.unusable}, unchanged {last.unchanged})"
        )


def fill_store(store, n_images: int, n_studies: int, seed: int = 0) -> None:  # noqa: ANN001
    """Bulk-insert patients, studies, series, images, one scoring run and its predictions."""
    from sqlalchemy import insert, select

    from cxrlt_desktop.library.triage import refresh_studies, summarize, threshold_vector
    from cxrlt_desktop.store.models import (
        FindingHit,
        Image,
        ModelSet,
        Patient,
        Prediction,
        ScoringRun,
        Series,
        Study,
    )

    rng = np.random.default_rng(seed)
    t = threshold_vector()
    n_pat = max(1, n_studies // 3)
    t0 = time.perf_counter()
    with store.session(write=True) as s, s.begin():
        s.execute(
            insert(Patient),
            [{"key": f"id:P{i}", "patient_id": f"P{i}", "synthetic": False} for i in range(n_pat)],
        )
        pat_ids = s.scalars(select(Patient.id).order_by(Patient.id)).all()
        dates = [
            f"20{rng.integers(15, 26)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
            for _ in range(n_studies)
        ]
        s.execute(
            insert(Study),
            [
                {
                    "patient_id": pat_ids[i % n_pat],
                    "study_uid": f"1.2.9.{i}",
                    "study_date": dates[i],
                    "description": "CHEST PA",
                    "synthetic": False,
                    "top_findings": [],
                }
                for i in range(n_studies)
            ],
        )
        study_ids = s.scalars(select(Study.id).order_by(Study.id)).all()
        s.execute(
            insert(Series),
            [
                {"study_id": sid, "series_uid": f"1.2.9.{sid}.1", "modality": "CR"}
                for sid in study_ids
            ],
        )
        series = dict(s.execute(select(Series.study_id, Series.id)).all())
        img_study = [study_ids[i % n_studies] for i in range(n_images)]
        s.execute(
            insert(Image),
            [
                {
                    "series_id": series[img_study[i]],
                    "path": f"/bench/{i}.dcm",
                    "size": 1,
                    "mtime": 0.0,
                    "sop_uid": f"1.2.9.9.{i}",
                    "meta": {},
                    "warnings": [],
                }
                for i in range(n_images)
            ],
        )
        ms = ModelSet(key="bench", description={})
        s.add(ms)
        s.flush()
        run = ScoringRun(model_set_id=ms.id)
        s.add(run)
        s.flush()
        probs = rng.beta(0.3, 5.0, size=(n_images, 36)).astype("<f4")
        image_ids = s.scalars(select(Image.id).order_by(Image.id)).all()
        rows, summaries = [], []
        for k, iid in enumerate(image_ids):
            summ = summarize(probs[k].astype(np.float64), t)
            summaries.append(summ)
            rows.append(
                {
                    "image_id": iid,
                    "run_id": run.id,
                    "model_set_id": ms.id,
                    "image_version": 1,
                    "probs": probs[k].tobytes(),
                    "rare_score": summ.rare_score,
                    "n_above": summ.n_above,
                    "top_findings": summ.top_findings,
                }
            )
        s.execute(insert(Prediction), rows)
        pred_ids = dict(s.execute(select(Prediction.image_id, Prediction.id)).all())
        s.execute(
            Image.__table__.update()
            .where(Image.id == Image.id)
            .values(
                current_prediction_id=select(Prediction.id)
                .where(Prediction.image_id == Image.id)
                .scalar_subquery()
            )
        )
        hits = [
            {
                "prediction_id": pred_ids[iid],
                "image_id": iid,
                "study_id": img_study[k],
                "finding": f,
                "probability": p,
                "threshold": th,
            }
            for k, (iid, summ) in enumerate(zip(image_ids, summaries, strict=True))
            for f, p, th in summ.hits
        ]
        if hits:
            s.execute(insert(FindingHit), hits)
        t1 = time.perf_counter()
        refresh_studies(s, study_ids)
        t2 = time.perf_counter()
    print(
        f"filled {n_images} images / {n_studies} studies / {len(hits)} finding hits in {t2 - t0:.1f} s "
        f"(study summaries of all studies recomputed in {t2 - t1:.1f} s)",
        file=sys.stderr,
    )


def bench_worklist(work: Path, n_images: int, n_studies: int) -> None:
    from sqlalchemy import func, literal, select

    from cxrlt_desktop.library.worklist import query_worklist
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import FindingHit, Image, Prediction, Series

    db = work / "worklist.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = open_store(f"sqlite:///{db}")
    fill_store(store, n_images, n_studies)
    with store.session() as s, s.begin():
        counts = s.execute(
            select(FindingHit.finding, func.count(func.distinct(FindingHit.study_id)))
            .group_by(FindingHit.finding)
            .order_by(func.count(func.distinct(FindingHit.study_id)))
        ).all()
    rare_f, rare_n = counts[0]
    common_f, common_n = counts[-1]
    # Worst case for the filter: a finding above threshold in half of all images (the matching
    # studies must be sorted, not just probed).
    dense_f = "Support Devices"
    with store.session(write=True) as s, s.begin():
        s.execute(
            FindingHit.__table__.insert().from_select(
                ["prediction_id", "image_id", "study_id", "finding", "probability", "threshold"],
                select(
                    Prediction.id,
                    Image.id,
                    Series.study_id,
                    literal(dense_f),
                    literal(0.9),
                    literal(0.5),
                )
                .join(Image, Image.current_prediction_id == Prediction.id)
                .join(Series, Series.id == Image.series_id)
                .where(Image.id % 2 == 0),
            )
        )
        dense_n = s.scalar(
            select(func.count(func.distinct(FindingHit.study_id))).where(
                FindingHit.finding == dense_f
            )
        )
    cases = [
        ("no filter", {}),
        (f"finding={common_f!r} ({common_n} studies)", {"finding": common_f}),
        (f"finding={rare_f!r} ({rare_n} studies)", {"finding": rare_f}),
        (f"finding={dense_f!r} ({dense_n} studies, added)", {"finding": dense_f}),
        ("status=unreviewed", {"status": "unreviewed"}),
        (
            f"status=unreviewed + finding={common_f!r}",
            {"status": "unreviewed", "finding": common_f},
        ),
    ]
    for label, kw in cases:
        query_worklist(store, limit=100, **kw)  # warm the page cache
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            rows = query_worklist(store, limit=100, **kw)
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"worklist LIMIT 100, {label}: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms ({len(rows)} rows)"
        )
    with store.raw_connection() as c:
        plan = c.execute(
            "EXPLAIN QUERY PLAN SELECT study.id FROM study WHERE study.n_images > 0 AND study.id IN "
            "(SELECT finding_hit.study_id FROM finding_hit WHERE finding_hit.finding = ?) "
            "ORDER BY study.priority DESC, study.study_date DESC, study.id DESC LIMIT 100",
            (common_f,),
        ).fetchall()
    print("plan:", "; ".join(r[-1] for r in plan))
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--studies", type=int, default=30_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--skip-worklist", action="store_true")
    args = ap.parse_args()
    # Everything this run writes goes under one temporary folder removed at the end, unless
    # --workdir names a folder to keep.
    scratch = tempfile.TemporaryDirectory(prefix="cxrlt-bench-")
    os.environ.setdefault("CXRLT_DATA_DIR", str(Path(scratch.name) / "data"))
    work = args.workdir or Path(scratch.name) / "work"
    work.mkdir(parents=True, exist_ok=True)
    import sqlite3

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    if not args.skip_scan:
        bench_scan(work, args.files)
    if not args.skip_worklist:
        bench_worklist(work, args.images, args.studies)
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
