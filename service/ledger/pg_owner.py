"""Owner liveness on PostgreSQL, for replicas on several hosts (where ``flock`` cannot reach).

Each process holds a session-level advisory lock, keyed by its owner id, on a connection of its own for
as long as it lives. PostgreSQL releases the lock when that session ends: the process died (SIGKILL
included), its host went away, or the server cut the connection. Any replica tells a dead owner at once
by looking for the lock in ``pg_locks`` (the schema's ``owner_is_alive``), without taking it and without
waiting out a timeout.

An owner whose session was cut while the process lives has *lost* its lock (:meth:`is_lost`): another
replica may already have recovered its run, so it must stop writing. Its guarded updates (``WHERE status
= 'running'``) then match nothing, and finished rows are final, so it cannot overwrite the recovery.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import socket

import asyncpg

from service.database.postgres import PostgresDatabase

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

_ALIVE = "SELECT owner_is_alive(:owner)"
_TAKE = "SELECT pg_try_advisory_lock(owner_lock_key($1))"


def _new_owner_id() -> str:
    host = _SAFE.sub("_", socket.gethostname())[:64]
    return f"{host}.{os.getpid()}.{secrets.token_hex(4)}"


def lock_key(owner_id: str) -> int:
    """The advisory lock key of an owner id (the schema's ``owner_lock_key``): 64 bits of its hash."""
    return int.from_bytes(hashlib.sha256(owner_id.encode()).digest()[:8], "big", signed=True)


class PostgresOwnerLock:
    """This process's identity in the ledger, proven alive by an advisory lock its own session holds."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.owner_id = _new_owner_id()
        self._database = database
        self._session: asyncpg.Connection | None = None
        self._guard = asyncio.Lock()  # one statement at a time on the lock's session

    async def acquire(self) -> None:
        # Named, so an operator sees in pg_stat_activity which session proves which replica alive.
        session = await asyncpg.connect(
            self._database.address,
            server_settings={"application_name": f"product-sync owner {self.owner_id}"},
        )
        try:
            taken = await session.fetchval(_TAKE, self.owner_id)
        except BaseException:
            await session.close()
            raise
        if not taken:  # a random nonce in the id: only a hash collision gets here
            await session.close()
            raise RuntimeError(f"the advisory lock of owner {self.owner_id} is held by another session")
        self._session = session

    async def release(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()  # ends the session, and with it the lock

    async def is_lost(self) -> bool:
        """Whether this process's lock session has ended (the server cut it, or the network did)."""
        async with self._guard:
            if self._session is None or self._session.is_closed():
                return True
            try:
                await self._session.fetchval("SELECT 1")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError):
                # Once lost, never held again by this session: the lock may be another owner's by now.
                session, self._session = self._session, None
                session.terminate()
                return True
            return False

    async def renew(self) -> None:
        """After a loss: a new owner id and its lock. Never the old id again, whose runs are dead."""
        if await self.is_lost():
            lost, self.owner_id = self.owner_id, _new_owner_id()
            await self.acquire()
            log.warning("lost the ledger lock of owner %s; now owner %s", lost, self.owner_id)

    async def is_alive(self, owner_id: str) -> bool:
        """True while the process that wrote ``owner_id`` into the ledger still holds its lock.

        Asked through the database's pool: looking at ``pg_locks`` takes nothing.
        """
        if owner_id == self.owner_id:
            return not await self.is_lost()
        row = await self._database.fetch_one(_ALIVE, {"owner": owner_id})
        return bool(row is not None and row[0])
