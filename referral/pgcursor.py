"""A psycopg cursor whose ``description`` builds its columns only when something reads them.

psycopg builds a ``Column`` object for every column of every result as soon as ``cursor.description``
is read, and SQLAlchemy reads it after every statement that returns rows, only to see that it is not
``None``: for a statement it has run before (its compiled form is cached), the result's metadata is
cached too and the columns are never looked at. Building them cost 4.7 % of a submission's
instructions in the app and 12 % of a read's (bench/profile_requests.py --instructions; a read's
statements return many columns). Here ``description`` answers ``None`` exactly when psycopg's does,
its length without building anything, and the same columns, built from the same result, the first
time anything indexes or iterates it (docs/decisions.md, session 13).

psycopg's own names, pinned in requirements.txt: ``Column`` reads the result, the encoding and the
adapters from the cursor it is given; tests/test_pgcursor.py holds both descriptions to the same answer.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg import pq

# The statuses for which psycopg describes a result that has no fields ("SELECT ;" → []).
_DESCRIBED = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK)


class _ResultOf:
    """What ``psycopg.Column`` reads from a cursor, fixed at the moment the description was taken: the
    cursor itself may have moved on to another statement by the time the columns are built."""

    __slots__ = ("pgresult", "_encoding", "adapters")

    def __init__(self, pgresult: Any, encoding: str, adapters: Any) -> None:
        self.pgresult, self._encoding, self.adapters = pgresult, encoding, adapters


class LazyDescription(Sequence[psycopg.Column]):
    __slots__ = ("_result", "_length", "_columns")

    def __init__(self, result: _ResultOf, length: int) -> None:
        self._result, self._length = result, length
        self._columns: list[psycopg.Column] | None = None

    def _built(self) -> list[psycopg.Column]:
        if self._columns is None:
            self._columns = [psycopg.Column(self._result, i) for i in range(self._length)]  # type: ignore[arg-type]
        return self._columns

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> psycopg.Column: ...
    @overload
    def __getitem__(self, index: slice) -> list[psycopg.Column]: ...
    def __getitem__(self, index: int | slice) -> psycopg.Column | list[psycopg.Column]:
        return self._built()[index]

    def __iter__(self) -> Iterator[psycopg.Column]:
        return iter(self._built())

    def __repr__(self) -> str:
        return repr(self._built())


class LazyDescriptionCursor(psycopg.Cursor[Any]):
    @property
    def description(self) -> LazyDescription | None:  # type: ignore[override]
        res = self.pgresult
        if res and (res.nfields or res.status in _DESCRIBED):
            return LazyDescription(_ResultOf(res, self._encoding, self.adapters), res.nfields)
        return None
