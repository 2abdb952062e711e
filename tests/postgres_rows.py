"""What an auditor's ``psql`` shows: reads on a session of their own, nothing of the service's, and the
ledger == catalog check of ``catalog_checks`` for a PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg

from service.database.postgres import prepare_session

_T = TypeVar("_T")


def on_own_loop(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` to its end from plain code that may be called while a test's loop runs (a fixture, a
    polled predicate): on a loop of its own, in a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


async def pg_query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of ``sql`` (``$n`` placeholders), timestamps as the contract's text as the service reads
    them."""
    conn = await asyncpg.connect(url)
    try:
        await prepare_session(conn)
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def pg_scalar(url: str, sql: str, *args: Any) -> Any:
    return (await pg_query(url, sql, *args))[0][0]


async def assert_pg_ledger_matches_catalog(url: str, run_id: int, *, latest_writer: bool = True) -> None:
    """The run's counters are what the catalog holds from it. ``updated`` is exact only for the newest
    run that wrote a product (a later update moves ``updated_run``); for older runs a lower bound."""
    (run,) = await pg_query(url, "SELECT * FROM runs WHERE id = $1", run_id)
    ((created, updated, categories, errors),) = await pg_query(
        url,
        """
        SELECT (SELECT count(*) FROM products WHERE created_run = $1),
               (SELECT count(*) FROM products WHERE updated_run = $1 AND created_run <> $1),
               (SELECT count(*) FROM categories WHERE created_run = $1),
               (SELECT count(*) FROM run_errors WHERE run_id = $1)
        """,
        run_id,
    )
    counted = (run["created"], run["categories_created"], run["errors"])
    assert counted == (created, categories, errors), dict(run)
    if latest_writer:
        assert run["updated"] == updated, dict(run)
    else:
        assert run["updated"] >= updated, dict(run)
    assert run["processed"] == run["created"] + run["updated"] + run["unchanged"] + run["errors"], dict(run)
