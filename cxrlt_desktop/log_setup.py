"""Logging and warnings of the ``cxrlt`` commands and the GUI: quiet by default, details on demand.

By default the app's own messages say what went wrong with which file, one line each, so the
third-party libraries' reports (pydicom logging a decoder's traceback for every bad image, PIL's
and timm's warnings) would only repeat them at length:

- log records of the app's packages (``cxrlt_desktop``, ``engine``, ``training``) at WARNING and
  above are printed, one line each, without a traceback;
- other libraries' log records are printed only at CRITICAL, one line each;
- Python warnings are shown (one line, through logging) only when they are attributed to the app's
  own modules; other libraries' warnings are ignored.

Verbose (``cxrlt --verbose ...`` or ``CXRLT_VERBOSE=1``): the app's records from INFO, every other
library's from WARNING, with tracebacks, and every warning once per place. A ``PYTHONWARNINGS`` or ``-W``
setting is left as the user gave it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

VERBOSE_ENV = "CXRLT_VERBOSE"
OWN_PACKAGES = ("cxrlt_desktop", "engine", "training")
_OWN_MODULES = r"(cxrlt_desktop|engine|training)(\.|$)"


def verbose_from_env() -> bool:
    """True when ``CXRLT_VERBOSE`` is set to anything but "", "0", "false", "no" or "off"."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (as ``logging.lastResort`` does), so a
    replaced stderr (a test's capture, a GUI's redirect) is followed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


class _LevelFilter(logging.Filter):
    """One threshold for the app's own loggers (and shown warnings), another for the rest."""

    def __init__(self, own: int, others: int) -> None:
        super().__init__()
        self.own, self.others = own, others

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in OWN_PACKAGES or record.name == "py.warnings"
        return record.levelno >= (self.own if own else self.others)


class _OneLine(logging.Formatter):
    """``cxrlt: <logger>: <message>`` on one line: no traceback, no stack."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().strip().splitlines()
        first = message[0] if message else ""
        if record.exc_info and record.exc_info[1] is not None and not first:
            first = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return f"cxrlt: {record.name}: {first}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    text = str(message).strip().splitlines()
    logging.getLogger("py.warnings").warning(
        "%s: %s (%s:%s)", category.__name__, text[0] if text else "", filename, lineno
    )


_HANDLER_NAME = "cxrlt-stderr"


def configure_logging(verbose: bool | None = None) -> None:
    """Set up logging and warnings for a command or the GUI (once per process; calling again
    replaces the earlier set-up).

    Parameters
    ----------
    verbose
        Details from every library; None reads ``CXRLT_VERBOSE``.
    """
    if verbose is None:
        verbose = verbose_from_env()
    root = logging.getLogger()
    for h in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(h)
    handler = _Stderr()
    handler.set_name(_HANDLER_NAME)
    if verbose:
        handler.setFormatter(logging.Formatter("cxrlt: %(name)s: %(levelname)s: %(message)s"))
        handler.addFilter(_LevelFilter(logging.INFO, logging.WARNING))
        if root.level > logging.INFO:
            root.setLevel(logging.INFO)
    else:
        handler.setFormatter(_OneLine())
        handler.addFilter(_LevelFilter(logging.WARNING, logging.CRITICAL))
    root.addHandler(handler)
    if sys.warnoptions:  # the user's -W / PYTHONWARNINGS win
        return
    warnings.showwarning = _show_warning
    if verbose:
        warnings.simplefilter("default")
    else:
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", module=_OWN_MODULES)


__all__ = ["OWN_PACKAGES", "VERBOSE_ENV", "configure_logging", "verbose_from_env"]
