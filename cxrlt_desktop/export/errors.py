"""The errors an export raises (a module of their own: every other export module raises them)."""

from __future__ import annotations


class ExportError(Exception):
    """The export cannot be made (the message names the folder or file and says why)."""


class ExportCancelled(ExportError):
    """``should_stop`` asked the export to stop; the files written so far were removed."""
