"""Entry point of the frozen (PyInstaller) app: the ``cxrlt`` command line, GUI included."""

import multiprocessing
import sys

if __name__ == "__main__":
    # Worker processes of a frozen app re-run this script; freeze_support routes them.
    multiprocessing.freeze_support()
    from cxrlt_desktop.cli import main

    sys.exit(main())
