"""Qt user interface. The only package that imports PySide6.

Importing it installs :mod:`cxrlt_desktop.ui._pyside_fix` (a guard against a PySide6 reference
count bug in ``Signal.emit``) before any widget can emit a signal.
"""

from cxrlt_desktop.ui import _pyside_fix  # noqa: F401  (side effect: patch emit when needed)
