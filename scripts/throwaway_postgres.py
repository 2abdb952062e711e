"""A throwaway PostgreSQL cluster in a directory of its own, on loopback, for tests and benchmarks.

``initdb`` refuses to run as root, and the tests run as root: the cluster belongs to an unprivileged
system user (created when missing). Debian's ``postgresql`` package provides the binaries; the test
command installs it when missing (``scripts/install-postgres.sh``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLUSTER_USER = "psync-pg"


class PostgresUnavailable(RuntimeError):
    """The cluster could not be created or started; the message says what is missing."""


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if candidates:
        return str(candidates[0])
    raise PostgresUnavailable(
        f"{name} not found: install Debian's postgresql package (scripts/install-postgres.sh does)"
    )


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(CLUSTER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", CLUSTER_USER],
            check=True,
        )
        return pwd.getpwnam(CLUSTER_USER)


@dataclass
class PostgresCluster:
    directory: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def postmaster_pid(self) -> int:
        """The server's first process; the others are its children."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", CLUSTER_USER, "--", *command]

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(self._as_owner(command), capture_output=True, text=True)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(command[:2])} failed: {done.stderr.strip() or done.stdout}")

    def start(self) -> None:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _ensure_user()
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run([initdb, "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = self.directory / "postgres.log"
        self._run(
            [pg_ctl, "-D", str(self.data_dir), "-o", options, "-l", str(log), "-w", "-t", "60", "start"]
        )

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run([find_binary("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])


@contextmanager
def running_cluster(port: int) -> Iterator[PostgresCluster]:
    """A new cluster started in a temporary directory of its own, then stopped and deleted.

    Not under pytest's tmp_path: the cluster's unprivileged owner must reach its directory.
    """
    directory = Path(tempfile.mkdtemp(prefix="product-sync-pg-"))
    cluster = PostgresCluster(directory, port)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
