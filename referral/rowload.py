"""Objects from plain rows: the few hottest reads load their objects past the ORM's per-query set-up.

SQLAlchemy's ORM builds, for every execution of a query, a row processor for each entity it loads (a
populator per column, looked up in the result's metadata) before it reads a single row. For the one-row
reads every request makes that set-up costs more than the statement: the API token with its user is about
790 K instructions through the ORM and 360 K as the same row through SQLAlchemy Core (docs/performance.md,
session 14). Here a statement selects each entity's columns (``columns_of``) and ``load`` turns its part of
a row into the object the ORM would have given: registered in the session's identity map as persistent,
with no history (nothing to flush), relationships left to load lazily as usual; an object already in the
session is answered as the ORM answers it: what it holds unchanged (no refresh), what it does not hold
(expired by a commit) filled from the row.

Only for plain mappers: one table, no inheritance, no version counter, every column loaded at once, no
relationship loaded eagerly by default, no ``load`` or ``refresh`` listeners (``columns_of`` refuses
others; a listener added after a model's first use is not seen). The session bookkeeping is
SQLAlchemy's own (private names, pinned in requirements.txt); tests/test_rowload.py holds the objects to
what the ORM loads, attribute by attribute and in what a flush, an expiry and a lazy load then do.
"""
from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Column, inspect
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.orm.attributes import instance_state


@functools.cache
def _plan(model: type) -> tuple[Any, tuple[Any, ...], tuple[str, ...], tuple[int, ...]]:
    """(mapper, columns, attribute keys in the same order, positions of the primary key's columns)."""
    mapper = inspect(model)
    mapper.attrs  # noqa: B018 - configures the mappers first: a Mutable type adds its listeners then
    table = mapper.local_table
    if mapper.inherits is not None or mapper.polymorphic_on is not None or mapper.version_id_col is not None:
        raise TypeError(f"{model.__name__}: rowload is for plain mappers only")
    if mapper.class_manager.dispatch.load or mapper.class_manager.dispatch.refresh or mapper.always_refresh:
        raise TypeError(f"{model.__name__}: has load or refresh listeners, which only the ORM's loading calls")
    eager = [rel.key for rel in mapper.relationships if rel.lazy in ("joined", "selectin", "subquery", "immediate")]
    if eager:
        raise TypeError(f"{model.__name__}.{eager[0]}: loaded eagerly with its parent, which only the ORM does")
    columns, keys = [], []
    for prop in mapper.column_attrs:
        if len(prop.columns) != 1 or not isinstance(prop.columns[0], Column) or prop.columns[0].table is not table \
                or prop.deferred:
            raise TypeError(f"{model.__name__}.{prop.key}: not a plain column loaded with the row")
        columns.append(prop.columns[0])
        keys.append(prop.key)
    primary = tuple(columns.index(column) for column in mapper.primary_key)
    return mapper, tuple(columns), tuple(keys), primary


def columns_of(model: type) -> tuple[Any, ...]:
    """The columns ``load`` reads for ``model``, in its order: put them in a statement's columns as they are."""
    return _plan(model)[1]


def load(session: Session, model: type, row: Any, start: int = 0) -> Any:
    """The ``model`` object whose columns (``columns_of``) are ``row[start:]``; None where its primary key is
    NULL (an outer join that found nothing)."""
    mapper, _columns, keys, primary = _plan(model)
    if isinstance(session, scoped_session):
        session = session()
    identity = tuple(row[start + i] for i in primary)
    if None in identity:
        return None
    key = mapper.identity_key_from_primary_key(identity)
    identity_map = session.identity_map
    found = identity_map.get(key)
    if found is not None:
        # As the ORM does (loading._populate_partial): what the object holds stays as it is; what it does not
        # hold (expired by a commit, say) is filled from the row, so reading it costs no second query.
        state = instance_state(found)
        unloaded = state.unloaded
        if unloaded:
            values = state.dict
            for offset, attribute in enumerate(keys, start):
                if attribute in unloaded:
                    values[attribute] = row[offset]
            state._commit(values, unloaded)
        return found
    obj = mapper.class_manager.new_instance()
    state = instance_state(obj)
    values = state.dict
    for offset, attribute in enumerate(keys, start):
        values[attribute] = row[offset]
    # What the ORM's loading does with a new identity (sqlalchemy.orm.loading._instance). The values went
    # into the state's dict directly, not through the instrumented attributes: there is no history to
    # commit (the ORM's _commit_all finds none on a new state either; the tests check none is left).
    state.key = key
    state.identity_token = None
    state.session_id = session.hash_key
    identity_map._add_unpresent(state, key)
    if session.dispatch.loaded_as_persistent:
        session.dispatch.loaded_as_persistent(session, state)
    return obj


def execute(session: Session, statement: Any, params: dict[str, Any]) -> Any:
    """Run a statement of ``columns_of`` columns on the session's connection, flushing first as an ORM query
    would (unless autoflush is off): its Core result."""
    if isinstance(session, scoped_session):
        session = session()
    session._autoflush()  # the ORM's own: not while a flush runs, and its errors say a query flushed
    return session.connection(bind_arguments={"clause": statement}).execute(statement, params)
