"""Which process owns a running run, and whether it is still alive.

Each service process holds an exclusive ``flock`` on its own lock file for as long as it lives. The kernel
drops the lock the moment the process dies (SIGKILL included), so anyone sharing the database file can
tell "owner alive" exactly, without waiting out a timeout. Hung-but-alive owners are caught by the
heartbeat instead. On PostgreSQL, an advisory lock plays the part of the file (``pg_owner``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Protocol

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Owner(Protocol):
    """This process's identity in the ledger, and how to tell whether another owner still lives."""

    @property
    def owner_id(self) -> str: ...

    async def is_alive(self, owner_id: str) -> bool:
        """True while the process that wrote ``owner_id`` into the ledger still runs (for this
        process's own id: while it still holds its proof of life)."""
        ...

    async def is_lost(self) -> bool:
        """Whether this process lost its proof of life while it runs (another process may then
        recover its run, so it must stop writing)."""
        ...

    async def renew(self) -> None:
        """After a loss, take a new identity with a new proof of life, for the runs started from now
        on (the lost identity's runs stay dead)."""
        ...


class OwnerLock:
    """This process's identity in the ledger, proven alive by a held lock file."""

    def __init__(self, lock_dir: Path) -> None:
        host = _SAFE.sub("_", socket.gethostname())[:64]
        self.owner_id = f"{host}.{os.getpid()}.{secrets.token_hex(4)}"
        self._lock_dir = lock_dir
        self._path = lock_dir / f"{self.owner_id}.lock"
        self._fd: int | None = None

    @staticmethod
    def lock_dir_for(db_path: Path) -> Path:
        return db_path.parent / f"{db_path.name}.owners"

    def acquire(self) -> None:
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        os.close(self._fd)
        self._fd = None

    async def is_lost(self) -> bool:
        return False  # a lock file is held until the process dies

    async def renew(self) -> None:
        """Nothing to renew: the lock is never lost while the process lives."""

    async def is_alive(self, owner_id: str) -> bool:
        """True while the process that wrote ``owner_id`` into the ledger still runs (two system calls:
        not worth a thread)."""
        if owner_id == self.owner_id:
            return True
        path = self._lock_dir / f"{_SAFE.sub('_', owner_id)}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            # We got the lock, so its owner is gone: tidy the file away.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return False
        finally:
            os.close(fd)
