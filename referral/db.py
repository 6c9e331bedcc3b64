"""Declarative base, naming convention and column type aliases shared by every model."""
from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any

from sqlalchemy import DateTime, Integer, MetaData, String, TypeDecorator, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from sqlalchemy.sql.elements import ClauseElement

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_today(now: dt.datetime) -> dt.date:
    """The calendar day at ``now`` in the service's zone (``LOCAL_TIMEZONE``): whether a certificate is
    current, when an expiry is near. Not UTC's: a certificate that lapsed at midnight in Bishkek is not
    honoured until 06:00 there."""
    return now.astimezone(local_zone()).date()


def local_zone() -> zoneinfo.ZoneInfo:
    """The service's zone (``LOCAL_TIMEZONE``): its calendar days and months."""
    from flask import current_app

    return zoneinfo.ZoneInfo(current_app.config["LOCAL_TIMEZONE"])


def local_midnight(day: dt.date) -> dt.datetime:
    """The instant ``day`` begins in the service's zone: a period of days starts or ends there."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=local_zone())


def latest_today(now: dt.datetime) -> dt.date:
    """The latest calendar date anywhere at ``now`` (UTC+14): "not in the future" for a date a person gives.

    A focal point in Bishkek (UTC+6) is a calendar day ahead of UTC until 06:00; her "today" is no
    future date. Areas carry no time zone, and this needs none.
    """
    return (now.astimezone(dt.UTC) + dt.timedelta(hours=14)).date()


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones, so values are stored as naive UTC and given back
    aware; a naive value handed in is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
code = Annotated[str, mapped_column(String(64), unique=True)]
name = Annotated[str, mapped_column(String(200))]
timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime())]
created_at = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow)]


class Base(DeclarativeBase):
    # The registry is given whole (not metadata + type_annotation_map attributes)
    # because Flask-SQLAlchemy subclasses this base.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={dt.datetime: UTCDateTime(), str: String(255)},
    )


__all__ = ["Base", "Mapped", "mapped_column", "utcnow", "intpk", "code", "name", "timestamp", "created_at"]


# -- several small reads in one round trip ----------------------------------------------

@dataclass(frozen=True)
class Combined:
    """Several SELECTs run as one ``UNION ALL`` (``combine``): each keeps its own columns, ``NULL`` in the
    others' places, and its own order, so ``run_combined`` hands back each one's rows as if run alone."""

    statement: Any
    shapes: tuple[tuple[int, int, Any], ...]  # per statement: first column, number of columns, row type


def combine(*statements: Any) -> Combined:
    """One statement answering ``statements`` (built once by the caller: building one costs about as much as
    running it). They must agree on what each bind parameter means. A statement's ``ORDER BY`` becomes its
    rows' ``row_number()``, so a LIMIT or OFFSET would be lost: none may have one."""
    from collections import namedtuple

    from sqlalchemy import cast, func, literal_column, null, union_all

    columns = [list(s.selected_columns) for s in statements]
    widths = [len(c) for c in columns]
    starts = [sum(widths[:i]) for i in range(len(statements))]
    everyone = [c for cs in columns for c in cs]
    members, shapes = [], []
    for i, statement in enumerate(statements):
        # SQLAlchemy keeps a Select's ORDER BY, LIMIT and OFFSET in these attributes (2.0); the test of the
        # full read's one statement fails if they move.
        if (statement._limit_clause is not None or statement._offset_clause is not None
                or statement._fetch_clause is not None or statement._distinct or statement._distinct_on):
            raise ValueError("combine: a statement's LIMIT, OFFSET, FETCH or DISTINCT would be lost")
        own = range(starts[i], starts[i] + widths[i])
        slots = [(everyone[j] if j in own else cast(null(), everyone[j].type)).label(f"c{j}")
                 for j in range(len(everyone))]
        position = func.row_number().over(order_by=list(statement._order_by_clauses) or None)
        # The part's number as SQL text, not a bind parameter: no name of the callers' can clash with it.
        members.append(statement.with_only_columns(literal_column(str(i)).label("m"), position.label("p"), *slots,
                                                   maintain_column_froms=True).order_by(None))
        names = [c.key if c.key and c.key.isidentifier() else f"c{k}" for k, c in enumerate(columns[i])]
        shapes.append((starts[i], widths[i], namedtuple(f"Row{i}", names, rename=True)))
    compound = union_all(*members)
    return Combined(compound.order_by(compound.selected_columns.m, compound.selected_columns.p), tuple(shapes))


def run_combined(session: Any, combined: Combined, params: dict[str, Any]) -> list[list[Any]]:
    """Each statement's rows, in the order ``combine`` was given the statements."""
    out: list[list[Any]] = [[] for _ in combined.shapes]
    for row in session.execute(combined.statement, params):
        start, width, shape = combined.shapes[row[0]]
        out[row[0]].append(shape._make(row[2 + start:2 + start + width]))
    return out


# -- plain rows, past the ORM ---------------------------------------------------------------

def insert_rows(session: Any, table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in the session's transaction.

    PostgreSQL takes them by COPY: for ten rows as for thousands it costs about half the CPU of an
    executemany INSERT in the app (no statement and parameters built per row) and a fifth less in the
    server (bench/: 170-200 against 315-360 us for ten rows). Elsewhere an executemany INSERT. No type
    processing happens on the way: each value must be what the column stores (an aware datetime, an
    enum's value), and the caller flushes first whatever the rows refer to.
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        with raw.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
                f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    connection.execute(table.insert(), [dict(zip(columns, row)) for row in rows])



# Plain rows written with objects (insert_objects): (table, columns, rows as tuples in ``columns`` order).
Rows = tuple[Any, tuple[str, ...], list[tuple[Any, ...]]]


def insert_objects(session: Any, objects: list[Any], *, rows: list[Rows] | tuple[Rows, ...] = ()) -> bool:
    """Insert these pending objects now, past the unit of work (one INSERT each, on PostgreSQL one
    statement for them all), and keep them in the session as persistent and unchanged, as a flush would
    leave them: each column's Python default filled in where the value is missing or None, a serial key
    read back, a parent's key taken from the parent set as an object (loaded if expired). Rows go in the
    order of their tables' foreign keys (``metadata.sorted_tables``), then as given; an object listed
    twice is written once. ``rows``: plain rows written after the objects, as ``insert_rows`` writes them
    (values as the columns store them), on PostgreSQL in the same statement as the objects.

    False, with nothing written (``rows`` neither), where only a flush does it right: the session has changed or deleted
    objects (a flush orders those), or one of ``objects`` is not pending, refers to a pending parent in its
    own table not before it, holds a SQL expression, lacks its primary key (but a serial one not set by
    hand), holds a collection (one-to-many or many-to-many rows are the flush's), or its table has a
    server-side default. An error from the database rolls the session back, as a failed flush does, so no
    half-written batch outlives it.

    Why: a flush of a new case, its offer and the officer's message cost about twice the CPU of their
    three INSERTs (the unit of work's dependency sort and bookkeeping; docs/performance.md, session 11),
    and on PostgreSQL one round trip does for the three.
    """
    if session.dirty or session.deleted:
        return False
    unique = list({id(obj): obj for obj in objects}.values())
    if not unique:
        try:
            for table, columns, values in rows:
                insert_rows(session, table, columns, values)
        except Exception:
            session.rollback()  # as below: nothing half-written outlives an error
            raise
        return True
    order = _table_order(inspect(unique[0]).mapper.local_table.metadata)
    unique.sort(key=lambda obj: order.get(inspect(obj).mapper.local_table, len(order)))  # stable: then as given
    plans = []
    earlier: dict[int, bool] = {}  # objects planned before: id → whether its key is serial (known once written)
    chained = False  # one refers to a serial key written in this batch
    for obj in unique:
        state = inspect(obj)
        plan = _insert_plan(state.mapper) if state.pending else None
        if plan is None:
            return False
        statement, serial, defaults, columns, parents, keys, collections = plan
        values = state.dict
        if serial is not None and values.get(serial) is not None or any(values.get(key) for key in collections):
            return False
        for key, _pairs in parents:
            parent = values.get(key)
            if parent is not None and inspect(parent).key is None:
                if id(parent) not in earlier:
                    return False  # a parent not in the database yet, nor written before this one
                chained = chained or earlier[id(parent)]
        for key, default in defaults:  # as a flush fills them in (None too); values set are kept
            if values.get(key) is None and default is not None:
                values[key] = default.arg(None) if default.is_callable else default.arg
            values.setdefault(key, None)
        if any(isinstance(values[key], ClauseElement) for key, _column in columns) \
                or any(values[key] is None for key in keys):
            return False
        plans.append((obj, state, statement, serial, columns, parents))
        earlier[id(obj)] = serial is not None
    owner = plans[0][1].session  # the Session itself (``session`` may be a scoped_session)
    if any(plan[1].session is not owner for plan in plans):
        return False
    try:
        extra = [(table, columns, values) for table, columns, values in rows if values]
        written = _write(session.connection(), plans, extra, together=not chained and len(plans) + len(extra) > 1)
        for table, columns, values in extra[written:]:
            insert_rows(session, table, columns, values)
    except Exception:
        session.rollback()  # as a failed flush: nothing of the batch stays half-written
        raise
    # What the flush does with the states it wrote (SQLAlchemy's own, pinned in requirements.txt; the tests
    # compare with a flush): their values become the loaded state, their identity is registered, and the
    # transaction keeps them as new, so that a rollback makes them transient again.
    # The session's "pending_to_persistent" listeners hear of them as of a flush's (step statuses do).
    owner._register_persistent({plan[1] for plan in plans})
    return True


def keys_as_written(obj: Any) -> bool:
    """Whether the pending ``obj``'s foreign keys already hold what ``insert_objects`` (or a flush) would
    write: each parent set as an object agrees with the key beside it, read without loading anything.
    False also where ``insert_objects`` could not write it."""
    state = inspect(obj)
    plan = _insert_plan(state.mapper)
    if plan is None:
        return False
    for key, pairs in plan[4]:
        if key not in state.dict:
            continue  # never set as an object: the key is what goes in
        parent = state.dict[key]
        loaded = inspect(parent).dict if parent is not None else {}
        for local, remote in pairs:
            if parent is not None and remote not in loaded:
                return False  # would be loaded to tell
            if state.dict.get(local) != (None if parent is None else loaded[remote]):
                return False
    return True


def _write(connection: Any, plans: list[Any], extra: list[Rows], *, together: bool) -> int:
    """Write the objects' rows, and on PostgreSQL ``extra`` with them; how many of ``extra`` were written."""
    # PostgreSQL takes them in one statement (data-modifying CTEs; a row's foreign keys are checked at the
    # statement's end), unless one refers to a serial key written in the same batch, known only after.
    together = together and connection.dialect.name == "postgresql"
    for _obj, state, statement, serial, columns, parents in plans:
        values = state.dict
        for key, pairs in parents:  # a parent set (or cleared) as an object: its key goes in, as a flush syncs it
            if key in values:
                parent = values[key]
                for local, remote in pairs:  # getattr: an expired parent is loaded, as a flush loads it
                    values[local] = None if parent is None else getattr(parent, remote)
        if together:
            continue
        result = connection.execute(statement, {column: values[key] for key, column in columns})
        if serial is not None:  # RETURNING where the database has it, else the cursor's last row id
            values[serial] = result.inserted_primary_key[0]
    if not together:
        return 0
    combined = _together(tuple(plan[1].mapper for plan in plans),
                         tuple((table, columns, len(values)) for table, columns, values in extra))
    params = {f"p{n}_{column}": plan[1].dict[key] for n, plan in enumerate(plans) for key, column in plan[4]}
    for k, (_table, columns, values) in enumerate(extra):
        for names, row in zip(_row_names(k, columns, len(values)), values):
            params.update(zip(names, row))
    keys = run_compiled(connection, combined, params).one()
    for plan, key in zip((plan for plan in plans if plan[3] is not None), keys):
        plan[1].dict[plan[3]] = key
    return len(extra)


@functools.lru_cache(maxsize=256)
def _row_names(k: int, columns: tuple[str, ...], count: int) -> tuple[tuple[str, ...], ...]:
    """The parameter names of the ``k``-th plain rows of a combined INSERT, a tuple per row: built once."""
    return tuple(tuple(f"r{k}_{i}_{column}" for column in columns) for i in range(count))


@functools.lru_cache(maxsize=128)
def compiled_once(statement: Any, dialect: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``statement`` (built once, e.g. a ``functools.cache``'d builder's) compiled once for ``dialect``: its
    SQL, and (parameter, bind processor) for each parameter whose type converts the value, as SQLAlchemy's
    execution applies them. ``run_compiled`` runs it.

    Executing the statement itself would have SQLAlchemy build its cache key again on every execution, a
    walk over every element: for a new case with its offer, message, consents and steps (about 200
    parameters) that walk and the lookup cost more than a COPY of the steps and consents did
    (docs/performance.md, session 13); for the audit append every request makes, 2 % of a read's
    instructions (session 14). Refused (ValueError): a statement whose parameters SQLAlchemy renames in
    its SQL, or one returning a column that would need converting (rows are taken as the driver gives
    them)."""
    compiled = statement.compile(dialect=dialect)
    if compiled.escaped_bind_names or compiled.positional \
            or any(compiled.bind_names[bind] != name for name, bind in compiled.binds.items()):
        raise ValueError("a parameter of the statement is renamed in its SQL")
    if any(column.type.dialect_impl(dialect).result_processor(dialect, None) is not None
           for column in getattr(statement, "selected_columns", ())):
        raise ValueError("a column the statement returns would need converting")  # taken as the driver gives it
    processors = []
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((name, process))
    return compiled.string, tuple(processors)


def run_compiled(connection: Any, statement: Any, params: dict[str, Any]) -> Any:
    """Execute ``statement`` (see ``compiled_once``) with ``params`` (every one of its parameters, by name;
    converted here in place) on ``connection``: the driver's result, rows unconverted."""
    sql, processors = compiled_once(statement, connection.dialect)
    for name, process in processors:
        params[name] = process(params[name])
    return connection.exec_driver_sql(sql, params)


@functools.cache
def _table_order(metadata: Any) -> dict[Any, int]:
    return {table: n for n, table in enumerate(metadata.sorted_tables)}


@functools.lru_cache(maxsize=64)
def _together(mappers: tuple[Any, ...], extra: tuple[tuple[Any, tuple[str, ...], int], ...] = ()) -> Any:
    """One statement inserting a row into each mapper's table (parameters ``p<n>_<column>``), then each
    ``extra`` (table, columns, number of rows) as plain rows (``r<k>_<row>_<column>``, each value as the
    column stores it, as COPY takes them), answering the serial keys in order. Built once for each shape (a new case,
    its offer, the officer's message, its consents and steps)."""
    from sqlalchemy import bindparam, insert, literal_column, select, union_all

    ctes, answers = [], []
    for n, mapper in enumerate(mappers):
        _statement, serial, _defaults, columns, *_rest = _insert_plan(mapper)
        table = mapper.local_table
        row = insert(table).values({column: bindparam(f"p{n}_{column}", type_=table.c[column].type)
                                    for _key, column in columns})
        if serial is not None:
            column = table.c[mapper.get_property(serial).columns[0].key]
            cte = row.returning(column).cte(f"inserted_{n}")
            answers.append(select(cte.c[column.key]).scalar_subquery())
        else:
            cte = row.cte(f"inserted_{n}")
        ctes.append(cte)
    for k, (table, columns, count) in enumerate(extra):
        # INSERT … SELECT … UNION ALL SELECT …: SQLAlchemy caches neither a multi-row VALUES nor values()
        # (no cache key: compiled again on every execution), and this it does.
        selects = [select(*(bindparam(name, type_=table.c[column].type) for name, column in zip(names, columns)))
                   for names in _row_names(k, columns, count)]
        ctes.append(insert(table).from_select(list(columns), union_all(*selects) if count > 1 else selects[0])
                    .cte(f"rows_{k}"))
    return select(*answers or [literal_column("1")]).add_cte(*ctes)


@functools.cache
def _insert_plan(mapper: Any) -> Any:
    """(INSERT statement, the serial key's attribute or None, (attribute, Python default) of every other
    column, (attribute, column key) of every column the INSERT sets, (many-to-one relationship, [(local
    attribute, parent's attribute)]), the primary key's other attributes, the collections' attributes);
    None when the mapper needs what only a flush does."""
    table = mapper.local_table
    if mapper.inherits is not None or mapper.version_id_col is not None:
        return None
    serial = None
    defaults, columns = [], []
    for prop in mapper.column_attrs:
        if len(prop.columns) != 1 or prop.columns[0].table is not table:
            return None
        column = prop.columns[0]
        if column is table.autoincrement_column and column.default is None:  # as SQLAlchemy judges it
            serial = prop.key
            continue
        if column.server_default is not None or column.default is not None and not (
                column.default.is_scalar or column.default.is_callable):
            return None
        defaults.append((prop.key, column.default))
        columns.append((prop.key, column.key))
    keys = tuple(prop.key for prop in mapper.column_attrs if prop.columns[0].primary_key and prop.key != serial)
    parents, collections = [], []
    for rel in mapper.relationships:
        if rel.viewonly:
            continue
        if rel.direction.name != "MANYTOONE":
            collections.append(rel.key)
            continue
        if rel.secondary is not None:
            return None
        parents.append((rel.key, [(mapper.get_property_by_column(local).key,
                                   rel.mapper.get_property_by_column(remote).key)
                                  for local, remote in rel.local_remote_pairs]))
    return table.insert(), serial, tuple(defaults), tuple(columns), tuple(parents), keys, tuple(collections)
