"""Feedback-export throughput: labels/disagreements, DICOM SR and PNG copies per second.

Run by hand (not in CI)::

    .venv/bin/python benchmarks/bench_export.py        # 2,000 images; 200 SRs; 20 PNGs of 2048 px
    .venv/bin/python benchmarks/bench_export.py --n 500 --sr-n 50 --png 5 --size 1024

A SQLite store in a temporary folder gets ``--n`` reviewed images (rows inserted directly: one
patient per 4 images, a prediction with random probabilities, 3 verdicts each); the export is
timed without options; a second store of ``--sr-n`` images is timed with ``--sr``. ``--png`` real 16-bit DICOMs of ``--size`` x ``--size``
pixels are scanned and reviewed in a second store and exported with ``--copy-images``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _fill(store, n: int, seed: int = 0) -> None:
    from cxrlt_desktop.store.models import (
        Image,
        ModelSet,
        Patient,
        Prediction,
        Review,
        ScoringRun,
        Series,
        Study,
        array_to_probs,
    )
    from engine.classes import ALL_CLASSES

    rng = np.random.default_rng(seed)
    verdicts = ("present", "absent", "uncertain")

    def work(s):
        ms = ModelSet(
            key="bench", description={"models": [{"sha256": "ab" * 32, "role": "task1-csra"}]}
        )
        s.add(ms)
        s.flush()
        run = ScoringRun(model_set_id=ms.id, settings={"mode": "fast"})
        s.add(run)
        s.flush()
        for i in range(n):
            if i % 4 == 0:
                pat = Patient(key=f"id:P{i}", patient_id=f"P{i}", patient_name=f"Name^{i}")
                study = Study(patient=pat, study_uid=f"1.2.3.{i}", study_date="20240102")
                series = Series(study=study, series_uid=f"1.2.3.{i}.1", modality="CR")
                s.add_all([pat, study, series])
            img = Image(
                series=series, path=f"/nowhere/{i}.dcm", size=1, mtime=0.0, sop_uid=f"1.2.3.{i}.1.1"
            )
            s.add(img)
            s.flush()
            pred = Prediction(
                image_id=img.id,
                run_id=run.id,
                model_set_id=ms.id,
                probs=array_to_probs(rng.random(len(ALL_CLASSES))),
            )
            s.add(pred)
            s.flush()
            img.current_prediction_id = pred.id
            for k in rng.choice(len(ALL_CLASSES), 3, replace=False):
                s.add(
                    Review(
                        image_id=img.id,
                        finding=ALL_CLASSES[k],
                        verdict=verdicts[int(rng.integers(3))],
                        reviewer="Bench^Reviewer",
                        prediction_id=pred.id,
                    )
                )

    store.write(work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sr-n", type=int, default=200, help="reviewed images for the --sr timing")
    ap.add_argument("--png", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("CXRLT_DATA_DIR", tmp)
        from cxrlt_desktop.export import export_feedback
        from cxrlt_desktop.store import open_store

        tmp_path = Path(tmp)
        store = open_store(f"sqlite:///{tmp_path / 'bench.db'}")
        t0 = time.perf_counter()
        _fill(store, args.n)
        print(f"filled {args.n} reviewed images in {time.perf_counter() - t0:.1f} s")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")

        t0 = time.perf_counter()
        res = export_feedback(store, tmp_path / "csv")
        dt = time.perf_counter() - t0
        print(
            f"labels + disagreements: {res.n_images} images, {res.n_disagreements} disagreements "
            f"in {dt:.2f} s ({res.n_images / dt:.0f} images/s)"
        )
        store.close()
        store = open_store(f"sqlite:///{tmp_path / 'sr.db'}")
        _fill(store, args.sr_n)
        t0 = time.perf_counter()
        res = export_feedback(store, tmp_path / "sr", sr=True)
        dt = time.perf_counter() - t0
        print(
            f"with --sr: {res.n_sr} SR files in {dt:.2f} s ({dt / max(1, res.n_sr) * 1000:.0f} ms per image)"
        )
        store.close()

        if args.png:
            from cxrlt_desktop.library.reviews import set_verdict
            from cxrlt_desktop.library.scanning import scan
            from engine.dicomwrite import write_dicom

            folder = tmp_path / "dicoms"
            rng = np.random.default_rng(1)
            for i in range(args.png):
                px = rng.integers(0, 4096, (args.size, args.size), dtype=np.uint16)
                write_dicom(folder / f"{i}.dcm", px, bits_stored=12, patient_id=f"P{i}")
            store = open_store(f"sqlite:///{tmp_path / 'png.db'}")
            for _ in scan(store, [folder]):
                pass
            from sqlalchemy import select

            from cxrlt_desktop.store.models import Image

            with store.session() as s:
                ids = list(s.scalars(select(Image.id)))
            for i in ids:
                set_verdict(store, i, "Hernia", "present", reviewer="Bench^Reviewer")
            t0 = time.perf_counter()
            res = export_feedback(store, tmp_path / "png", copy_images=True)
            dt = time.perf_counter() - t0
            print(
                f"with --copy-images: {res.n_images_copied} PNGs of {args.size} x {args.size} "
                f"(12-bit noise, the worst case for PNG) in {dt:.2f} s "
                f"({dt / max(1, res.n_images_copied) * 1000:.0f} ms per image)"
            )
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
