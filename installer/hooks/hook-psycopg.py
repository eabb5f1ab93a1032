"""psycopg 3 picks its implementation at import time (``psycopg.pq``: the C one from
``psycopg_binary`` when it imports, else pure Python over a system libpq), and the app only
names psycopg through SQLAlchemy's dialect. Collect psycopg's modules and the binary package's
extension modules by name (``collect_submodules("psycopg_binary")`` cannot: that package refuses
to be imported before psycopg); their libpq (``psycopg_binary.libs``) follows as their link-time
dependency, so the frozen app reaches a department's PostgreSQL without a libpq installed."""

from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("psycopg") + [
    "psycopg_binary",
    "psycopg_binary.pq",
    "psycopg_binary._psycopg",
    "psycopg_binary.version",
]
