"""Owner liveness on PostgreSQL, for replicas on several hosts (where ``flock`` cannot reach).

Each process holds a session-level advisory lock, keyed by its owner id, on a connection of its own for
as long as it lives. PostgreSQL releases the lock when that session ends: the process died (SIGKILL
included), its host went away, or the server cut the connection. Any replica tells a dead owner at once
by looking for the lock in ``pg_locks``, without taking it and without waiting out a timeout.

An owner whose session was cut while the process lives has *lost* its lock (:meth:`is_lost`): another
replica may already have recovered its run, so it must stop writing. Its guarded updates (``WHERE status
= 'running'``) then match nothing, and finished rows are final, so it cannot overwrite the recovery.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket

import asyncpg

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

# pg_locks shows a bigint advisory key as two 32-bit halves (classid high, objid low), objsubid 1.
_HELD = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND classid::bigint = $1 AND objid::bigint = $2
)
"""


def lock_key(owner_id: str) -> int:
    """The advisory lock key of an owner id: 64 bits of its hash, as PostgreSQL's signed bigint."""
    return int.from_bytes(hashlib.sha256(owner_id.encode()).digest()[:8], "big", signed=True)


def _halves(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PostgresOwnerLock:
    """This process's identity in the ledger, proven alive by an advisory lock its own session holds."""

    def __init__(self, url: str) -> None:
        host = _SAFE.sub("_", socket.gethostname())[:64]
        self.owner_id = f"{host}.{os.getpid()}.{secrets.token_hex(4)}"
        self._url = url
        self._session: asyncpg.Connection | None = None

    async def acquire(self) -> None:
        session = await asyncpg.connect(self._url)
        try:
            taken = await session.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.owner_id))
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

    async def is_alive(self, owner_id: str, conn: asyncpg.Connection) -> bool:
        """True while the process that wrote ``owner_id`` into the ledger still holds its lock.

        Asked on ``conn`` (any session of the pool): looking at ``pg_locks`` takes nothing.
        """
        if owner_id == self.owner_id:
            return not await self.is_lost()
        high, low = _halves(lock_key(owner_id))
        held: bool = await conn.fetchval(_HELD, high, low)
        return held
