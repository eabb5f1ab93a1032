"""The ``cxrlt`` sub-commands, one module each, registered by :mod:`cxrlt_desktop.cli`.

Each module has ``register(subparsers)``, which adds its parser and the function that runs it;
heavy imports (torch, Qt, SQLAlchemy) happen inside that function.
"""
