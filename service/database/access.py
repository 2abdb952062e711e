"""The database seam: what the ledger, the sinks and the outbox use, whichever backend is behind it.

Two backends implement it: the SQLite file (``sqlite.Database``, the default, embedded) and PostgreSQL
(``postgres.PostgresDatabase``, for replicas on several hosts). Statements are written with named
(``:name``) or numbered (``?1``) parameters for both; each layer keeps its SQL in one module, with a
PostgreSQL variant only of the statements whose SQL differs (see ``Dialect``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

# Which SQL a layer picks for the database it was given.
Dialect = Literal["sqlite", "postgres"]

Params = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    """One result row: by position or by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def keys(self) -> Iterable[str]: ...
    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class Statements(Protocol):
    """The statements of one write transaction; commit and rollback belong to the database."""

    async def fetch_all(self, sql: str, params: Params = ()) -> Sequence[Row]:
        """The rows of a query, or of a statement's RETURNING clause."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return how many rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement per parameter row (a batch's products)."""
        ...

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` (values of ``columns``, in order) to ``table``, the fastest way the backend has."""
        ...


class Database(Protocol):
    """One database this process opened: reads, write transactions, and what its schema is."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def target(self) -> str:
        """Where it is, as logs and answers show it: the file, or the server's URL without a password."""
        ...

    @property
    def address(self) -> str:
        """Where another process reaches it: the SQLite file's path, or the PostgreSQL URL with its
        credentials (handed to the mapping workers; never shown)."""
        ...

    @property
    def known_version(self) -> int:
        """The newest migration this code knows for this backend."""
        ...

    async def applied_version(self) -> int:
        """The newest migration applied to the database (checking first that it is still reachable)."""
        ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> Sequence[Row]: ...

    def transaction(self, *, wait: bool = True) -> AbstractAsyncContextManager[Statements]:
        """A write transaction, serialised with every other writer of the database (in any process):
        committed when the block ends, rolled back if it raises.

        ``wait=False``: when another process is writing, raise DatabaseBusy at once rather than wait
        for its write lock (an optional write, such as the recovery a status read attempts).
        """
        ...

    async def checkpoint(self) -> None:
        """Fold what a run wrote into the main store now, where the backend has such a step."""
        ...

    async def close(self) -> None: ...
