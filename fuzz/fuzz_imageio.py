"""Coverage-guided fuzzer (atheris / libFuzzer) of the image-input layer, ``engine.imageio``.

Every input is written to one temporary file and passed to :func:`engine.imageio.read_header`
and :func:`engine.imageio.read_image`, as the scanner and the scorer do. The documented contract
is checked; anything else is a finding that stops the run and leaves the input in the artifact
folder (``-artifact_prefix``):

- ``read_header`` never raises and returns a ``HeaderInfo``; a refused file has a one-line
  reason;
- ``read_image`` returns a ``DecodedImage`` or raises ``ImageReadError`` whose text is
  ``"<path>: <one-line reason>"``; any other exception escaping it is a finding;
- a native crash (SIGSEGV, SIGABRT), an input running past ``-timeout`` or memory past
  ``-rss_limit_mb`` is a finding (libFuzzer's own checks).

Handled but notable outcomes (the layer's catch-all "unexpected error ..." reasons, a decoder
worker that crashed, ran out of memory or timed out, control characters in a reason) do not stop
the run: the first input of each kind is saved in ``FUZZ_NOTABLE_DIR`` (default
``fuzz/work/notable``) with the reason beside it, for triage. ``FUZZ_KEEP_GOING=1`` (long runs by
hand) records broken contracts there too (``finding-*``) instead of stopping at the first one;
native crashes, timeouts and memory still stop the run.

Coverage: atheris instruments the Python code of ``engine`` and ``pydicom`` in this process. The
native decoders (OpenJPEG, CharLS, GDCM, libjpeg-turbo in OpenCV) are not instrumented; and when
``engine.imageio`` decodes compressed pixel data in worker processes (the default), a crash of a
decoder kills a worker, which the layer reports as an ``ImageReadError`` (saved as notable).
``FUZZ_ISOLATE=0`` decodes in this process instead, so that a decoder crash is a libFuzzer crash
with its stack.

Usage (``make fuzz`` wraps it)::

    python fuzz/fuzz_imageio.py CORPUS_DIR SEED_DIR -max_total_time=600 -timeout=30 \\
        -artifact_prefix=fuzz/work/artifacts/
    python fuzz/fuzz_imageio.py fuzz/work/artifacts/crash-<sha1>     # reproduce one input
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

NOTABLE = (
    ("unexpected", re.compile(r"^unexpected error")),
    ("decoder-crash", re.compile(r"^decoder (crashed|ran out of memory|timed out)")),
    ("decoder-start", re.compile(r"^the decoder process could not start")),
)
MAX_NOTABLE_FILES = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NUMBERS_AND_QUOTES = re.compile(r"'[^']*'|\"[^\"]*\"|\b[0-9A-Fa-f]{4}\b|\d+")
SELF_TEST_MARKER = b"CXRLT-FUZZ-SELF-TEST"


class ContractError(AssertionError):
    """The image-input layer broke its documented contract for this input."""


def _quiet_libraries() -> None:
    """Warnings and log records of the libraries would flood the fuzzer's output."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)


class Harness:
    """The per-input check, with the temporary file and the notable-outcome log."""

    def __init__(self, imageio, workdir: Path, notable_dir: Path) -> None:  # noqa: ANN001
        self.imageio = imageio
        self.path = workdir / "input"
        self.notable_dir = notable_dir
        self.keep_going = os.environ.get("FUZZ_KEEP_GOING") == "1"
        self.stage = ""
        self.seen: set[str] = set()

    def __call__(self, data: bytes) -> None:
        if not self.keep_going:
            self.check(data)
            return
        try:
            self.check(data)
        except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
            text = f"{type(exc).__name__}: {exc}"
            self._save("finding", self.stage, text, data, echo="FINDING")

    def check(self, data: bytes) -> None:
        """Run one input through both entry points; raise on a broken contract."""
        if data.startswith(SELF_TEST_MARKER) and os.environ.get("FUZZ_SELF_TEST") == "1":
            raise ContractError("self-test input: the harness reports a finding")
        self.path.write_bytes(data)
        self.stage = "read_header"
        info = self.imageio.read_header(self.path)
        if not isinstance(info, self.imageio.HeaderInfo):
            raise ContractError(f"read_header returned {type(info).__name__}, not HeaderInfo")
        if not info.ok:
            self._check_reason("read_header", info.reason, data)
        self.stage = "read_image"
        try:
            decoded = self.imageio.read_image(self.path)
        except self.imageio.ImageReadError as exc:
            prefix = f"{self.path}: "
            if not str(exc).startswith(prefix):
                raise ContractError(
                    f"ImageReadError text does not start with the path: {exc}"
                ) from exc
            self._check_reason("read_image", str(exc)[len(prefix) :], data)
            return
        if not isinstance(decoded, self.imageio.DecodedImage):
            raise ContractError(f"read_image returned {type(decoded).__name__}")

    def _check_reason(self, where: str, reason: str | None, data: bytes) -> None:
        if not reason or "\n" in reason or "\r" in reason:
            raise ContractError(f"{where}: the reason is not one non-empty line: {reason!r}")
        if _CONTROL.search(reason):  # e.g. ESC: a terminal would act on it when printed
            self._save("control-chars", where, reason, data)
        for kind, pattern in NOTABLE:
            if pattern.search(reason):
                self._save(kind, where, reason, data)

    def _save(self, kind: str, where: str, text: str, data: bytes, echo: str = "NOTABLE") -> None:
        """Keep the first input of each kind of message: the text before any parenthesis, with
        quoted values and numbers stripped (the details are the fuzzed bytes themselves)."""
        skeleton = _NUMBERS_AND_QUOTES.sub("#", text.split("(", 1)[0])
        key = f"{kind}|{where}|" + " ".join(skeleton.split())[:100]
        if key in self.seen or len(self.seen) >= MAX_NOTABLE_FILES:
            return
        self.seen.add(key)
        self.notable_dir.mkdir(parents=True, exist_ok=True)
        name = f"{kind}-{where}-{hashlib.sha1(data).hexdigest()}"
        (self.notable_dir / name).write_bytes(data)
        (self.notable_dir / f"{name}.txt").write_text(f"{where}: {text}\n", "utf-8")
        print(f"{echo} {where}: {text!r} -> {self.notable_dir / name}", file=sys.stderr)


def _workdir() -> Path:
    """A private folder for the input file, in memory where possible (one write per execution).

    libFuzzer ends the process without running Python's exit handlers, so the folder cannot be
    removed at the end: each run removes the folders of earlier runs whose process is gone.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() else Path(tempfile.gettempdir())
    for old in base.glob("cxrlt-fuzz-*-*"):
        pid = old.name.split("-")[2]
        try:
            ours = old.is_dir() and not old.is_symlink() and old.stat().st_uid == os.getuid()
        except OSError:
            continue
        if ours and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"cxrlt-fuzz-{os.getpid()}-", dir=base))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["engine", "pydicom"]):
        from engine import imageio

    if os.environ.get("FUZZ_ISOLATE") == "0":
        try:
            from engine.imageio import isolation

            isolation.configure(isolate=False)
        except (ImportError, AttributeError, TypeError):
            print("FUZZ_ISOLATE=0: this engine.imageio decodes in-process anyway", file=sys.stderr)
    _quiet_libraries()
    workdir = _workdir()
    notable = Path(os.environ.get("FUZZ_NOTABLE_DIR", ROOT / "fuzz" / "work" / "notable"))
    atheris.Setup(sys.argv, Harness(imageio, workdir, notable))
    atheris.Fuzz()


if __name__ == "__main__":  # spawned decoder workers import this file as __mp_main__
    main()
