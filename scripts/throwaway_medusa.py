"""A throwaway Medusa v2 backend for tests and benchmarks, on loopback only.

    python scripts/throwaway_medusa.py --dir /tmp/medusa-run      # starts it, prints SYNC_MEDUSA_* lines

Steps: a PostgreSQL cluster in a directory of its own under /tmp (scripts/throwaway_postgres.py),
``npm ci`` of the pinned app in ``scripts/medusa`` (skipped while its lockfile is unchanged),
``medusa db:create`` / ``db:migrate``, an admin user, ``medusa start``, a JWT from
``POST /auth/user/emailpass`` and a secret API key from ``POST /admin/api-keys``. The store is given
the currencies the tests use.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script (python scripts/throwaway_medusa.py) as well as imported by the tests and benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.throwaway_postgres import PostgresCluster, PostgresUnavailable

APP_DIR = Path(__file__).resolve().parent / "medusa"
MIN_NODE_MAJOR = 20
ADMIN_EMAIL = "admin@product-sync.test"
CURRENCIES = ("usd", "eur")


class MedusaUnavailable(RuntimeError):
    """Medusa could not be set up or started; the message says what failed, and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_node() -> str:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        raise MedusaUnavailable(f"Node.js {MIN_NODE_MAJOR}+ and npm are needed for Medusa v2: not found")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
        raise MedusaUnavailable(f"Medusa v2 needs Node.js {MIN_NODE_MAJOR} or newer; found {version}")
    return version


def install_app() -> None:
    """``npm ci`` from the committed lockfile, unless node_modules already holds exactly that."""
    lock = APP_DIR / "package-lock.json"
    stamp = APP_DIR / "node_modules" / ".product-sync-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise MedusaUnavailable(f"npm ci failed in {APP_DIR}: {done.stderr.strip()[-2000:]}")
    stamp.write_text(digest)


def _request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={**(headers or {})})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


@dataclass
class MedusaServer:
    directory: Path
    port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)
    database: str = "medusa"
    api_key: str = ""
    # Hex: a URL-safe token may start with "-", which the medusa CLI then reads as flags (seen once in
    # 64 starts or so: "medusa user failed ... Unknown arguments").
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None
    # The cluster's own directory in /tmp: its owner (an unprivileged user, see throwaway_postgres)
    # must reach it, which a test's private temporary directory does not allow.
    pg_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="product-sync-pg-")))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "medusa.log"

    @property
    def postgres(self) -> PostgresCluster:
        return PostgresCluster(self.pg_dir, self.pg_port)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.postgres.url(self.database),
            "JWT_SECRET": "throwaway-jwt-secret",
            "COOKIE_SECRET": "throwaway-cookie-secret",
            "MEDUSA_DISABLE_TELEMETRY": "true",
            "NODE_ENV": "development",
        }

    def _write_env_file(self) -> None:
        # medusa db:create reads DATABASE_URL from the app folder's .env only, not from the environment.
        env = self._env()
        keys = ("DATABASE_URL", "JWT_SECRET", "COOKIE_SECRET", "MEDUSA_DISABLE_TELEMETRY")
        (APP_DIR / ".env").write_text("".join(f"{key}={env[key]}\n" for key in keys))

    def _medusa(self, *args: str) -> None:
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                [str(APP_DIR / "node_modules" / ".bin" / "medusa"), *args],
                cwd=APP_DIR,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if done.returncode != 0:
            raise MedusaUnavailable(f"medusa {args[0]} failed (exit {done.returncode}); see {self.log_path}")

    def start(self) -> MedusaServer:
        _check_node()
        self.directory.mkdir(parents=True, exist_ok=True)
        install_app()
        try:
            self.postgres.start()
        except PostgresUnavailable as exc:
            raise MedusaUnavailable(str(exc)) from exc
        self._write_env_file()
        fresh = not (self.directory / "migrated").exists()
        if fresh:
            self._medusa("db:create", "--db", self.database, "--no-interactive")
            self._medusa("db:migrate")
            self._medusa("user", "-e", ADMIN_EMAIL, "-p", self.password)
            (self.directory / "migrated").write_text(self.password)
        else:
            self.password = (self.directory / "migrated").read_text()
        self.run_server()
        if fresh or not self.api_key:
            self.api_key = self._create_secret_key()
            self._set_currencies()
        return self

    def run_server(self, timeout_s: float = 120) -> None:
        """Start ``medusa start`` and wait for /health (also after :meth:`kill`, for restart tests)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(APP_DIR / "node_modules" / ".bin" / "medusa"),
                "start",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            cwd=APP_DIR,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MedusaUnavailable(
                    f"medusa start exited ({self.process.returncode}); see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise MedusaUnavailable(f"Medusa did not answer /health within {timeout_s:g} s; see {self.log_path}")

    def admin_jwt(self) -> str:
        answer = _request(
            "POST", f"{self.url}/auth/user/emailpass", {"email": ADMIN_EMAIL, "password": self.password}
        )
        return str(answer["token"])

    def _create_secret_key(self) -> str:
        headers = {"Authorization": f"Bearer {self.admin_jwt()}"}
        answer = _request(
            "POST", f"{self.url}/admin/api-keys", {"title": "product-sync tests", "type": "secret"}, headers
        )
        return str(answer["api_key"]["token"])

    @property
    def basic_auth(self) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()}

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """One Admin API call with the secret key (for tests that check what Medusa holds)."""
        return _request(method, f"{self.url}{path}", body, self.basic_auth)

    def _set_currencies(self) -> None:
        store = self.admin("GET", "/admin/stores")["stores"][0]
        currencies = [{"currency_code": code, "is_default": code == CURRENCIES[0]} for code in CURRENCIES]
        self.admin("POST", f"/admin/stores/{store['id']}", {"supported_currencies": currencies})

    def kill(self) -> None:
        """SIGKILL the server (its whole process group); PostgreSQL keeps running."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.postgres.stop()
        shutil.rmtree(self.pg_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, required=True, help="where PostgreSQL's data and the logs go")
    args = parser.parse_args()
    server = MedusaServer(args.dir.resolve())
    try:
        server.start()
    except MedusaUnavailable as exc:
        print(f"throwaway Medusa: {exc}", file=sys.stderr)
        return 1
    print(f"SYNC_MEDUSA_URL={server.url}")
    print(f"SYNC_MEDUSA_API_KEY={server.api_key}")
    print(
        f"# Medusa runs as pid {server.process.pid if server.process else '?'}; Ctrl-C stops it", flush=True
    )
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
