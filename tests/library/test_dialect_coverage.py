"""The store-using tests run on SQLite and PostgreSQL, unless an allow-list entry says why not.

A static check of the test sources (``ast``, no import): for every test function under
tests/library, tests/export and tests/review, the fixtures it requests are followed through
the module's own fixtures and the conftest files, the way pytest resolves them (the module's
fixture first, then its folder's conftest, then tests/conftest.py). A test that opens a SQLite
store (a fixture or helper whose code writes a ``sqlite:`` URL or calls ``sqlite3.connect(``) but reaches no fixture that brings PostgreSQL in (``postgres_url``, and so
``store_url``, ``any_store`` and whatever requests them) is a SQLite-only test: it must be
named in :data:`SQLITE_ONLY` (``"path::test"``, or ``"path"`` for a whole module) with the
reason. Entries that no longer match a SQLite-only test fail too, so the list stays true.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
AREAS = ("library", "export", "review")

# What opens a SQLite store in a function's own code.
SQLITE_MARKS = ("sqlite:", "sqlite3.connect(")
# The fixture that brings a PostgreSQL database in (tests/conftest.py); store_url requests it
# with request.getfixturevalue, so a fixture whose code names it counts as requesting it.
PG_FIXTURE = "postgres_url"

_READS_THE_FILE = "reads or damages the SQLite file itself"

SQLITE_ONLY: dict[str, str] = {
    "library/test_scoring_command_errors.py": "command-line errors before any scoring: a bad "
    "option, a library file that does not exist, a checkpoint that cannot be loaded",
    # About SQLite itself (the file, its bytes, folder, PRAGMAs, locks, URL forms): no
    # PostgreSQL form, or the PostgreSQL form is its own test.
    "library/test_cli.py::test_reading_commands_refuse_a_missing_database": (
        "a database file that does not exist; the PostgreSQL form (an empty database) is "
        "test_reading_commands_refuse_an_empty_server_database"
    ),
    "library/test_cli.py::test_database_folder_that_cannot_be_created_is_a_clear_error": (
        "the folder of a database file"
    ),
    "library/test_cli.py::test_zero_byte_and_foreign_files_are_not_libraries": _READS_THE_FILE,
    "library/test_cli.py::test_damaged_database_says_what_to_do": _READS_THE_FILE,
    "library/test_db_command.py::test_check_sqlite_foreign_key_check": (
        "PRAGMA foreign_key_check; the PostgreSQL checks are test_check_postgresql_*"
    ),
    "library/test_store.py::test_sqlite_pragmas_and_head": "SQLite's PRAGMAs",
    "library/test_store.py::test_in_memory_url_refused": "the sqlite:// in-memory URL",
    "library/test_store.py::test_retry_reason_sqlite_locked": "SQLITE_BUSY / database is locked",
    # Not about the store.
    "library/test_settings.py::test_round_trip": "a settings file; the URL is only written",
    "library/test_worker_command.py::test_commands_read_through_the_settings_path_map": (
        "the settings' [paths] map rewrites file paths; the library is incidental"
    ),
    "library/test_hostile_library.py": (
        "hostile input files through three processes (about 1 min); the store is incidental"
    ),
}


@dataclass
class Func:
    """A fixture or test function: the names it requests and whether its code opens SQLite."""

    params: list[str]
    source: str
    calls: set[str] = field(default_factory=set)


def _is_fixture(node: ast.FunctionDef) -> bool:
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "fixture":
            return True
    return False


def _parse(path: Path) -> tuple[dict[str, Func], dict[str, Func], dict[str, Func]]:
    """(fixtures, tests, helpers) of one file, by name."""
    text = path.read_text(encoding="utf-8")
    fixtures: dict[str, Func] = {}
    tests: dict[str, Func] = {}
    helpers: dict[str, Func] = {}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        f = Func(
            params=[a.arg for a in node.args.args + node.args.kwonlyargs],
            source=ast.get_source_segment(text, node) or "",
            calls={
                c.func.id
                for c in ast.walk(node)
                if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
            },
        )
        if _is_fixture(node):
            fixtures[node.name] = f
        elif node.name.startswith("test_"):
            tests[node.name] = f
        else:
            helpers[node.name] = f
    return fixtures, tests, helpers


@dataclass
class Reach:
    sqlite: bool = False
    postgresql: bool = False


def _reach(module: Path, tests_root: Path = TESTS) -> dict[str, Reach]:
    """For each test of ``module``: does it open SQLite, does it reach PostgreSQL."""
    fixtures, tests, helpers = _parse(module)
    levels = [fixtures]  # the module, then each conftest from its folder up to tests/
    folder = module.parent
    while True:
        conftest = folder / "conftest.py"
        if conftest.is_file():
            levels.append(_parse(conftest)[0])
        if folder == tests_root or folder == folder.parent:
            break
        folder = folder.parent

    def helper_opens(name: str, seen: set[str]) -> bool:
        if name in seen or name not in helpers:
            return False
        seen.add(name)
        h = helpers[name]
        return any(m in h.source for m in SQLITE_MARKS) or any(
            helper_opens(c, seen) for c in h.calls
        )

    def own(f: Func) -> Reach:
        return Reach(
            sqlite=any(m in f.source for m in SQLITE_MARKS)
            or any(helper_opens(c, set()) for c in f.calls),
            postgresql=PG_FIXTURE in f.source,
        )

    def fixture(name: str, level: int, stack: tuple) -> Reach:
        """The fixture ``name`` as seen from ``levels[level]`` onwards."""
        for i in range(level, len(levels)):
            if name in levels[i]:
                if (name, i) in stack:
                    return Reach()
                f = levels[i][name]
                r = own(f)
                for p in f.params:
                    # a fixture requesting its own name gets the next level's (an override)
                    sub = fixture(p, i + 1 if p == name else 0, (*stack, (name, i)))
                    r.sqlite |= sub.sqlite
                    r.postgresql |= sub.postgresql
                return r
        return Reach(postgresql=name == PG_FIXTURE)

    out = {}
    for name, t in tests.items():
        r = own(t)
        for p in t.params:
            sub = fixture(p, 0, ())
            r.sqlite |= sub.sqlite
            r.postgresql |= sub.postgresql
        out[name] = r
    return out


def sqlite_only_tests(tests_root: Path = TESTS, areas=AREAS) -> list[str]:
    """``"area/test_x.py::test_y"`` for every test that opens SQLite and never PostgreSQL."""
    found = []
    for area in areas:
        for module in sorted((tests_root / area).glob("test_*.py")):
            if module.resolve() == Path(__file__).resolve():
                continue  # this module: its sample modules are strings
            rel = module.relative_to(tests_root).as_posix()
            for name, r in _reach(module, tests_root).items():
                if r.sqlite and not r.postgresql:
                    found.append(f"{rel}::{name}")
    return found


def test_every_store_test_runs_on_both_dialects_or_says_why():
    found = sqlite_only_tests()
    unexplained = [t for t in found if t not in SQLITE_ONLY and t.split("::")[0] not in SQLITE_ONLY]
    assert not unexplained, (
        "these tests open a SQLite store only: run them on both dialects (the any_store or "
        "store_url fixture) or add them to SQLITE_ONLY with the reason:\n  "
        + "\n  ".join(unexplained)
    )
    stale = [k for k in SQLITE_ONLY if not any(t == k or t.split("::")[0] == k for t in found)]
    assert not stale, f"SQLITE_ONLY entries that match no SQLite-only test any more: {stale}"


# ------------------------------------------------------------------------------------------
# the check itself, on small modules written here


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


CONFTESTS = {
    "conftest.py": (
        "import pytest\n\n@pytest.fixture\ndef postgres_url():\n    return 'postgresql://x'\n"
    ),
    "area/conftest.py": (
        "import pytest\n\n"
        "@pytest.fixture\ndef store(tmp_path):\n    return open_store(f'sqlite:///{tmp_path}')\n\n"
        "@pytest.fixture(params=['sqlite', 'postgresql'])\n"
        "def store_url(request, tmp_path):\n"
        "    if request.param == 'sqlite':\n        return f'sqlite:///{tmp_path}'\n"
        "    return request.getfixturevalue('postgres_url')\n\n"
        "@pytest.fixture\ndef any_store(store_url):\n    return open_store(store_url)\n\n"
        "@pytest.fixture\ndef library(store):\n    return store\n"
    ),
}


def test_the_check_finds_sqlite_only_tests_and_follows_overrides(tmp_path):
    root = _write(
        tmp_path,
        {
            **CONFTESTS,
            "area/test_a.py": (
                "def test_sqlite(store):\n    pass\n\n"
                "def test_through_library(library):\n    pass\n\n"
                "def test_both(any_store):\n    pass\n\n"
                "def test_url(store_url, tmp_path):\n    main(['scan', '--db', store_url])\n\n"
                "def test_literal(tmp_path):\n    main(['scan', '--db', f'sqlite:///{tmp_path}'])\n\n"
                "def _helper(p):\n    return open_store(f'sqlite:///{p}')\n\n"
                "def test_by_helper(tmp_path):\n    _helper(tmp_path)\n\n"
                "def test_no_store(tmp_path):\n    assert tmp_path\n"
            ),
            # the module's own `store` runs the conftest's `library` on both dialects
            "area/test_b.py": (
                "import pytest\n\n"
                "@pytest.fixture\ndef store(any_store):\n    return any_store\n\n"
                "def test_library(library):\n    pass\n\n"
                "def test_store(store):\n    pass\n"
            ),
        },
    )
    assert sqlite_only_tests(root, areas=("area",)) == [
        "area/test_a.py::test_sqlite",
        "area/test_a.py::test_through_library",
        "area/test_a.py::test_literal",
        "area/test_a.py::test_by_helper",
    ]
