"""The real Medusa the ``medusa`` suite runs against, and what the tests read back from it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.throwaway_medusa import MedusaServer

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


class Shop:
    """A started Medusa, emptied of products and categories before each test."""

    def __init__(self, server: MedusaServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_key(self) -> str:
        return self.server.api_key

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        return self.server.admin(method, path, body)

    def products(
        self, fields: str = "id,external_id,handle,title,status,updated_at,metadata"
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.admin("GET", f"/admin/products?limit=200&offset={offset}&fields={fields}")
            found.extend(page["products"])
            offset += len(page["products"])
            if not page["products"] or offset >= page["count"]:
                return found

    def categories(self) -> list[dict[str, Any]]:
        answer = self.admin("GET", "/admin/product-categories?limit=500&fields=id,handle,name")
        categories: list[dict[str, Any]] = answer["product_categories"]
        return categories

    def empty(self) -> None:
        ids = [product["id"] for product in self.products("id")]
        for start in range(0, len(ids), 200):
            self.admin("POST", "/admin/products/batch", {"delete": ids[start : start + 200]})
        for category in self.categories():
            self.admin("DELETE", f"/admin/product-categories/{category['id']}")

    def write_requests_since(self, mark: int) -> list[str]:
        """The write requests Medusa logged after ``mark`` (a length of its log), as ``METHOD path``."""
        lines = self.server.log_path.read_bytes()[mark:].decode("utf-8", "replace").splitlines()
        writes = []
        for line in lines:
            plain = line.replace("\x1b[32m", "").replace("\x1b[39m", "")
            parts = plain.split()
            if len(parts) >= 3 and parts[0] == "http:" and parts[1] in ("POST", "DELETE", "PUT", "PATCH"):
                writes.append(f"{parts[1]} {parts[2]}")
        return writes

    def log_mark(self) -> int:
        return self.server.log_path.stat().st_size

    def default_sales_channel(self) -> str:
        return str(self.admin("GET", "/admin/stores")["stores"][0]["default_sales_channel_id"])


def sync_env(shop: Shop, db_path: Path, source_url: str | None = None, **extra: str) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("SYNC_")},
        "PYTHONPATH": str(REPO_ROOT),
        "SYNC_DB_PATH": str(db_path),
        "SYNC_SINK": "medusa",
        "SYNC_MEDUSA_URL": shop.url,
        "SYNC_MEDUSA_API_KEY": shop.api_key,
        "SYNC_LOG_FORMAT": "text",
        "SYNC_RETRY_BASE_DELAY_S": "0.05",
        "SYNC_RETRY_MAX_DELAY_S": "0.2",
        **({"SYNC_SOURCE_URL": source_url} if source_url else {}),
        **extra,
    }


async def start_sync(env: Mapping[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "sync",
        "--quiet",
        *args,
        env=dict(env),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def run_sync(env: Mapping[str, str], *args: str, timeout_s: float = 300) -> Result:
    process = await start_sync(env, *args)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())
