"""Declarative base, naming convention and column type aliases shared by every model."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any

from sqlalchemy import DateTime, Integer, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

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

