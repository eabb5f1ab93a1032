"""Integrity check of a store: schema revision, dialect, and what the database says of its data.

- SQLite: ``PRAGMA integrity_check`` (the file's pages and indexes) and ``PRAGMA
  foreign_key_check`` (rows whose parent is missing).
- PostgreSQL (the server keeps its own pages consistent): for every foreign key of the models,
  whether the constraint exists and is validated, whether its enforcement triggers are enabled
  (``ALTER TABLE ... DISABLE TRIGGER ALL`` or a restore with ``session_replication_role =
  replica`` switch them off), the count of orphan rows (a child whose parent row is missing),
  counted whether or not the constraint is there, and id sequences behind their table's
  largest id (the next insert would fail).

Both dialects report the row count of every table and whether the schema is at this version's
head revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, inspect, select

from cxrlt_desktop.store.db import Store, alembic_config, current_revision
from cxrlt_desktop.store.models import Base


@dataclass
class CheckReport:
    """What :func:`check_store` found.

    Attributes
    ----------
    url
        The database URL with the password hidden.
    dialect
        ``sqlite`` or ``postgresql``.
    revision
        The schema revision the database is at (None: no schema yet).
    head
        The revision this version of the app migrates to.
    rows
        Row count per table of the models that exists in the database.
    problems
        One line per problem found; empty when the database is sound and at ``head``.
    """

    url: str
    dialect: str
    revision: str | None
    head: str
    rows: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "dialect": self.dialect,
            "revision": self.revision,
            "head": self.head,
            "ok": self.ok,
            "rows": dict(self.rows),
            "problems": list(self.problems),
        }


def head_revision() -> str:
    """The newest revision of the package's migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def check_store(store: Store) -> CheckReport:
    """Check ``store`` (read only: nothing is changed, nothing is migrated)."""
    report = CheckReport(
        url=store.engine.url.render_as_string(hide_password=True),
        dialect=store.engine.dialect.name,
        revision=current_revision(store),
        head=head_revision(),
    )
    if report.revision is None:
        report.problems.append("no schema (not migrated yet): run `cxrlt db upgrade --db URL`")
        return report
    if report.revision != report.head:
        report.problems.append(
            f"schema revision {report.revision}, this version expects {report.head}: run "
            "`cxrlt db upgrade --db URL` (a revision this version does not know was written by "
            "a newer CXR-LT Desktop)"
        )
    present = set(inspect(store.engine).get_table_names())
    tables = [t for t in Base.metadata.sorted_tables if t.name in present]
    with store.engine.connect() as conn:
        for t in tables:
            report.rows[t.name] = conn.scalar(select(func.count()).select_from(t))
        if report.dialect == "sqlite":
            report.problems += _sqlite_problems(conn)
        elif report.dialect == "postgresql":
            report.problems += _postgresql_problems(conn, tables)
    return report


def _sqlite_problems(conn) -> list[str]:  # noqa: ANN001
    problems = [
        f"integrity_check: {row[0]}"
        for row in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
        if row[0] != "ok"
    ]
    for table, rowid, parent, _fk in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall():
        problems.append(f"foreign_key_check: {table} row {rowid} refers to a missing {parent} row")
    return problems


def _postgresql_problems(conn, tables) -> list[str]:  # noqa: ANN001
    problems = []
    db_fks = {}
    for t in tables:
        db_fks[t.name] = {
            (tuple(fk["constrained_columns"]), fk["referred_table"])
            for fk in inspect(conn).get_foreign_keys(t.name)
        }
    for (name,) in conn.exec_driver_sql(
        "SELECT conrelid::regclass::text || '.' || conname FROM pg_constraint "
        "WHERE contype = 'f' AND NOT convalidated ORDER BY 1"
    ):
        problems.append(f"foreign key {name} is not validated (NOT VALID)")
    for (table,) in conn.exec_driver_sql(
        "SELECT DISTINCT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE g.tgisinternal AND g.tgconstraint <> 0 AND g.tgenabled = 'D' "
        "AND n.nspname = current_schema() ORDER BY 1"
    ):
        problems.append(f"{table}: foreign-key enforcement triggers are disabled")
    problems += _sequence_problems(conn, tables)
    for t in tables:
        for fk in t.foreign_key_constraints:
            cols = [c.name for c in fk.columns]
            parent = fk.referred_table
            if (tuple(cols), parent.name) not in db_fks[t.name]:
                problems.append(
                    f"{t.name}({', '.join(cols)}) -> {parent.name}: foreign key missing"
                )
            orphans = _orphans(conn, fk)
            if orphans:
                problems.append(
                    f"{t.name}({', '.join(cols)}) -> {parent.name}: {orphans} orphan row(s)"
                )
    return problems


def _orphans(conn, fk) -> int:  # noqa: ANN001
    """Rows of ``fk``'s table whose non-null key has no row in the referred table."""
    from sqlalchemy import and_

    child, parent = fk.parent, fk.referred_table
    p = parent.alias("p")
    on = and_(*(p.c[e.column.name] == e.parent for e in fk.elements))
    q = (
        select(func.count())
        .select_from(child.outerjoin(p, on))
        .where(*(e.parent.is_not(None) for e in fk.elements))
        .where(p.c[fk.elements[0].column.name].is_(None))
    )
    return int(conn.scalar(q))


def _sequence_problems(conn, tables) -> list[str]:  # noqa: ANN001
    """Tables whose id sequence is behind their largest id (rows copied in with their ids, a
    restore without the sequences): the next insert would fail with a unique violation."""
    from sqlalchemy import text

    problems = []
    for t in tables:
        pk = list(t.primary_key.columns)
        if len(pk) != 1 or pk[0].name != "id" or pk[0].autoincrement is False:
            continue
        seq = conn.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": t.name})
        if seq is None:
            continue
        last, called = conn.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
        next_id = last + 1 if called else last
        top = conn.scalar(select(func.max(pk[0])))
        if top is not None and next_id <= top:
            problems.append(
                f"{t.name}: id sequence {seq} would next give {next_id}, not above the largest "
                f"id {top} (the next insert would fail; fix with SELECT setval('{seq}', {top}))"
            )
    return problems
