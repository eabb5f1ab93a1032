"""Run a check in a child process that file permissions apply to, even when the tests run as root.

root bypasses file modes through two capabilities, CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so
to root a mode-000 file is readable and a permission test checks nothing; CI runs as root.
:func:`run_unprivileged` runs a Python snippet in a child process; when the tests run as root,
the child first drops those two capabilities from its bounding, inheritable, permitted and
effective sets (``prctl(PR_CAPBSET_DROP)`` and ``capset``, so that processes it starts cannot get
them back) and checks in ``/proc/self/status`` that they are gone. From then on the kernel applies
the file modes to it as to any user: root's own mode-000 file is refused with EACCES.

(Switching to ``nobody`` is not used: the interpreter may live under root's private home, which
``nobody`` cannot enter.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DROP_FILE_CAPABILITIES = r"""
import ctypes

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24
libc = ctypes.CDLL(None, use_errno=True)
for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
    if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]


header, data = _Header(0x20080522, 0), (_Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
if libc.capget(ctypes.byref(header), data) != 0:
    raise OSError(ctypes.get_errno(), "capget")
keep = ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
for field in ("effective", "permitted", "inheritable"):
    setattr(data[0], field, getattr(data[0], field) & keep)
if libc.capset(ctypes.byref(header), data) != 0:
    raise OSError(ctypes.get_errno(), "capset")
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if line.startswith("Cap"))
for name in ("CapEff", "CapPrm", "CapBnd"):
    assert int(status[name], 16) & 0b110 == 0, f"{name} still holds the file capabilities"
"""


def run_unprivileged(code: str, *args: str) -> Any:
    """Run ``code`` in a child Python that file modes apply to; return what it printed (JSON).

    Parameters
    ----------
    code : str
        Python source; ``sys.argv[1:]`` are ``args``; it prints one JSON value on stdout last.
    *args : str
        Arguments for the snippet (file paths).

    Raises
    ------
    AssertionError
        When the child fails (including when it cannot give up the capabilities), with its
        stderr.
    """
    prelude = "import os, sys\n"
    if os.geteuid() == 0:
        prelude += DROP_FILE_CAPABILITIES
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, f"unprivileged check failed ({proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
