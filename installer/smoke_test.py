"""Smoke test of the frozen app: run the built executable the way a user would.

    python installer/smoke_test.py [dist/cxrlt/cxrlt]

Checks, each in a fresh process of the frozen executable (exit code 0 expected):
1. ``cxrlt --version``;
2. ``cxrlt demo-data`` writes DICOM phantoms, JPEG 2000 included (pydicom + the pylibjpeg encoder
   found through its entry-point metadata);
3. ``cxrlt inspect`` reads one back, when the build has that command (the decoders);
4. ``cxrlt score`` of the demo images with a random-weight convnextv2_atto checkpoint (written
   by this Python's engine), once per CPU backend (OpenVINO, ONNX Runtime, PyTorch): each runs
   in the frozen app and all give the same numbers (skipped when this Python has no torch);
5. ``cxrlt gui --self-test`` offscreen (the GUI issue's self-test; skipped with --no-gui);
6. ``cxrlt listen`` answers DCMTK's ``echoscu``, stores a ``storescu`` push of the demo images in
   its inbox and exits 0 on SIGTERM (skipped when DCMTK is not installed);
7. department mode on the PostgreSQL server named by ``--postgres`` (or ``CXRLT_TEST_POSTGRES``,
   a SQLAlchemy URL of a maintenance database): in a database the smoke test creates and drops,
   the frozen ``cxrlt db upgrade`` and ``db check`` (psycopg and its binary libpq in the
   bundle), ``cxrlt scan`` of the demo images and ``cxrlt worker`` scoring them, and
   ``cxrlt queue --json`` counting them done (skipped, with the reason, without a server or
   without SQLAlchemy in this Python to create the database).
Prints one line per check and exits 0 only when all ran and passed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = (
    Path(__file__).resolve().parent.parent
    / "dist"
    / "cxrlt"
    / ("cxrlt.exe" if os.name == "nt" else "cxrlt")
)


def _run(exe: Path, args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        return 124, f"timed out after {timeout:.0f} s: {e}", time.perf_counter() - t0
    return p.returncode, (p.stdout or "") + (p.stderr or ""), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "exe", nargs="?", default=str(DEFAULT), help=f"frozen executable (default {DEFAULT})"
    )
    ap.add_argument("--no-gui", action="store_true", help="skip `gui --self-test`")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per check (default 300)")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("CXRLT_TEST_POSTGRES", ""),
        metavar="URL",
        help="SQLAlchemy URL of a PostgreSQL maintenance database for the department checks "
        "(default: CXRLT_TEST_POSTGRES; none: skipped)",
    )
    args = ap.parse_args(argv)
    exe = Path(args.exe)
    if not exe.is_file():
        print(
            f"smoke_test: {exe}: no such executable; build it first (make installer)",
            file=sys.stderr,
        )
        return 2

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    results: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="cxrlt-smoke-") as tmp:
        env["CXRLT_DATA_DIR"] = str(Path(tmp) / "data")
        env["CXRLT_CONFIG"] = str(Path(tmp) / "settings.toml")

        rc, out, dt = _run(exe, ["--version"], env, args.timeout)
        results.append(
            ("--version", rc == 0 and "cxrlt" in out, f"rc={rc} {dt:.1f}s {out.strip()[:200]}")
        )

        rc, help_text, _ = _run(exe, ["--help"], env, args.timeout)
        commands = help_text

        demo = Path(tmp) / "demo"
        rc, out, dt = _run(
            exe, ["demo-data", str(demo), "--n", "2", "--size", "320", "-q"], env, args.timeout
        )
        files = sorted(demo.rglob("*.dcm"))
        ok = rc == 0 and len(files) == 2 and (demo / "labels.csv").is_file()
        results.append(
            ("demo-data (DICOM + JPEG 2000 encode)", ok, f"rc={rc} {dt:.1f}s {out.strip()[-300:]}")
        )

        if " inspect" in commands and files:
            # The second demo image is JPEG 2000: decoding it needs the openjpeg plugin.
            rc, out, dt = _run(exe, ["inspect", str(files[-1])], env, args.timeout)
            results.append(
                ("inspect (JPEG 2000 decode)", rc == 0, f"rc={rc} {dt:.1f}s {out.strip()[-300:]}")
            )

        if files:
            results += _score_checks(exe, env, files, Path(tmp), args.timeout)
            results += _listen_checks(exe, env, files, Path(tmp), args.timeout)
            results += _department_checks(exe, env, files, Path(tmp), args.postgres, args.timeout)

        if not args.no_gui:
            rc, out, dt = _run(exe, ["gui", "--self-test"], env, args.timeout)
            results.append(("gui --self-test", rc == 0, f"rc={rc} {dt:.1f}s {out.strip()[-600:]}"))

    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    passed = all(ok for _, ok, _ in results)
    print("smoke test", "passed" if passed else "FAILED", f"({exe})")
    return 0 if passed else 1


def _score_checks(
    exe: Path, env: dict[str, str], files: list[Path], tmp: Path, timeout: float
) -> list[tuple[str, bool, str]]:
    """``cxrlt score`` with each CPU backend; the frozen runtimes must load and agree."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from engine.random_models import write_random_task1
    except ImportError as e:  # the smoke test may run from a Python without torch
        return [("score (skipped: no torch here to write a checkpoint)", True, str(e))]
    ckpt = write_random_task1(
        tmp / "atto_csra.safetensors", head="csra", arch="convnextv2_atto", seed=0
    )
    results, probs = [], {}
    for backend in ("openvino", "onnx", "torch"):
        out = tmp / f"scores-{backend}.csv"
        cmd = ["score", *map(str, files), "--out", str(out), "--task1-checkpoint", str(ckpt)]
        cmd += ["--mode", "fast", "--device", "cpu", "--image-size", "64", "--no-progress"]
        rc, text, dt = _run(exe, [*cmd, "--cpu-backend", backend], env, timeout)
        rows = out.read_text(encoding="utf-8").splitlines()[1:] if out.is_file() else []
        if rc == 0 and len(rows) == len(files):
            probs[backend] = [float(v) for r in rows for v in r.split(",")[1:31]]
        ok = backend in probs
        results.append((f"score --cpu-backend {backend}", ok, f"rc={rc} {dt:.1f}s {text[-300:]}"))
    if len(probs) == 3:
        diff = max(
            abs(a - b)
            for other in ("openvino", "onnx")
            for a, b in zip(probs[other], probs["torch"], strict=True)
        )
        results.append(("score backends agree (<= 1e-5)", diff <= 1e-5, f"max diff {diff:.2e}"))
    return results


def _listen_checks(
    exe: Path, env: dict[str, str], files: list[Path], tmp: Path, timeout: float
) -> list[tuple[str, bool, str]]:
    """The frozen ``cxrlt listen`` answers DCMTK's echoscu and stores a storescu push."""
    import re
    import shutil
    import signal
    import threading

    if not (shutil.which("echoscu") and shutil.which("storescu")):
        return [("listen (skipped: DCMTK echoscu/storescu not installed)", True, "")]
    inbox = tmp / "inbox"
    cmd = [str(exe), "listen", "--port", "0", "--no-score", "--inbox", str(inbox)]
    cmd += ["--db", f"sqlite:///{(tmp / 'listen.db').as_posix()}", "--min-free-mb", "1"]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    lines: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line.rstrip())
            m = re.search(r"listening on \S+:(\d+)", line)
            if m and not port:
                port.append(int(m.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(timeout)
    results = []
    try:
        if not port:
            return [("listen starts", False, "\n".join(lines[-10:]))]
        addr = ["-aec", "CXRLT", "127.0.0.1", str(port[0])]
        p = subprocess.run(["echoscu", *addr], capture_output=True, text=True, timeout=timeout)
        results.append(("listen answers echoscu", p.returncode == 0, p.stderr[-300:]))
        p = subprocess.run(
            ["storescu", "-xv", *addr, *map(str, files)], capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        time.sleep(2)
        stored = sorted(inbox.rglob("*.dcm"))
        ok = p.returncode == 0 and len(stored) == len(files)
        results.append(
            ("listen stores a storescu push", ok, f"{len(stored)} stored {p.stderr[-300:]}")
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        results.append(("listen stops on SIGTERM", rc == 0, f"rc={rc} {' '.join(lines[-2:])}"))
    return results


def _department_checks(
    exe: Path, env: dict[str, str], files: list[Path], tmp: Path, server: str, timeout: float
) -> list[tuple[str, bool, str]]:
    """The frozen ``cxrlt db upgrade``, ``db check``, ``scan``, ``worker`` and ``queue`` on a
    PostgreSQL database created (and dropped) here: psycopg's binary parts are in the bundle."""
    import json
    import re
    import secrets

    if not server:
        return [("department (skipped: no --postgres URL nor CXRLT_TEST_POSTGRES)", True, "")]
    try:
        from sqlalchemy import create_engine, make_url
    except ImportError as e:  # the database is created with this Python's SQLAlchemy
        return [("department (skipped: no SQLAlchemy here to create the database)", True, str(e))]
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from engine.random_models import write_random_task1
    except ImportError as e:
        return [("department (skipped: no torch here to write a checkpoint)", True, str(e))]
    ckpt = tmp / "atto_csra.safetensors"
    if not ckpt.is_file():
        write_random_task1(ckpt, head="csra", arch="convnextv2_atto", seed=0)
    name = f"cxrlt_smoke_{secrets.token_hex(5)}"
    try:
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as e:  # noqa: BLE001 - an unreachable server fails this check, in one line
        return [("department: create a database", False, " ".join(str(e).split())[:300])]
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    results = []
    try:
        rc, out, dt = _run(exe, ["db", "upgrade", "--db", url], env, timeout)
        results.append(("db upgrade (PostgreSQL)", rc == 0, f"rc={rc} {dt:.1f}s {out[-300:]}"))
        rc, out, dt = _run(exe, ["db", "check", "--db", url], env, timeout)
        ok = rc == 0 and "postgresql" in out and "integrity: ok" in out
        results.append(("db check (PostgreSQL)", ok, f"rc={rc} {dt:.1f}s {out.strip()[-300:]}"))
        folder = os.path.commonpath([str(f.parent) for f in files])
        rc, out, dt = _run(exe, ["scan", folder, "--db", url], env, timeout)
        results.append(("scan into PostgreSQL", rc == 0, f"rc={rc} {dt:.1f}s {out[-300:]}"))
        cmd = ["worker", "--db", url, "--task1-checkpoint", str(ckpt), "--mode", "fast"]
        cmd += ["--device", "cpu", "--image-size", "64", "--no-progress", "--name", "smoke"]
        rc, out, dt = _run(exe, cmd, env, timeout)
        m = re.search(r"worker smoke: queue empty: (\d+) scored, 0 failed", out)
        ok = rc == 0 and m is not None and int(m.group(1)) == len(files)
        results.append(("worker scores the queue", ok, f"rc={rc} {dt:.1f}s {out.strip()[-300:]}"))
        rc, out, dt = _run(exe, ["queue", "--db", url, "--json"], env, timeout)
        try:
            sets = json.loads(out)["model_sets"] if rc == 0 else []
        except (ValueError, KeyError):
            sets = []
        ok = len(sets) == 1 and sets[0]["done"] == len(files) and sets[0]["queued"] == 0
        results.append(("queue --json counts them done", ok, f"rc={rc} {out.strip()[-300:]}"))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return results


if __name__ == "__main__":
    sys.exit(main())
