"""Our sync into a real Medusa v2, beside the ceiling: demo products posted straight to
``/admin/products/batch`` by a minimal client, in requests of 1,000, one after another.

    PYTHONPATH=. .venv/bin/python -m bench.medusa              # 5,000 products; 1, 2 and 4 in flight
    PYTHONPATH=. .venv/bin/python -m bench.medusa --products 1000 --concurrency 2

``bench.run`` runs this as its Medusa part. The shop is the throwaway Medusa of the shop sink's suite
(``scripts/throwaway_medusa.py``: PostgreSQL and the pinned Medusa app, on loopback), started empty.
Each fresh push gets demo products of its own (other ids, SKUs and handles, the same shape), since
emptying a shop of 5,000 products takes Medusa longer than filling it. Our runs' times are the
ledger's (trigger to finish, the process start left out); the ceiling's are its requests', from its
first category to its last batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.feeds import feed_file
from bench.procs import LOOPBACK, REPO_ROOT, BenchError, free_port, upstream
from scripts.throwaway_medusa import MedusaServer, MedusaUnavailable
from service.catalog.mapping import ProductRow, map_item
from service.catalog.medusa.payloads import MedusaIds, Placement, create_payload, update_payload
from service.settings import Settings
from service.upstream import exact_json
from tests.medusa_shop import Shop

CEILING_REQUEST = 1_000
DEFAULT_CONCURRENCY: int = Settings.model_fields["medusa_concurrency"].default


@dataclass(frozen=True)
class PushResult:
    label: str
    products: int  # what was sent (ours: created + updated)
    seconds: float
    write_requests: int
    stats: Mapping[str, int]

    @property
    def per_second(self) -> float:
        return self.products / self.seconds if self.seconds else 0.0


@dataclass
class MedusaFigures:
    fresh: dict[int, PushResult]  # by requests in flight
    ceiling_create: PushResult
    same: PushResult
    same_read_per_second: float  # products compared per second by the identical re-sync
    changed: PushResult
    changed_expected: int
    ceiling_update: PushResult


def _rows(feed: Path) -> list[ProductRow]:
    rows: list[ProductRow] = []
    with feed.open("rb") as lines:
        for position, line in enumerate(lines):
            row = map_item(line.rstrip(b"\n"), position, "USD")
            if not isinstance(row, ProductRow):
                raise BenchError(f"feed item {position} does not map: {row}")
            rows.append(row)
    return rows


def _batch_body(creates: Sequence[dict[str, Any]], updates: Sequence[dict[str, Any]]) -> bytes:
    return exact_json.dumps({"create": list(creates), "update": list(updates)})


class MinimalClient:
    """The ceiling: no lookups, no ledger, no retries; one request at a time."""

    def __init__(self, server: MedusaServer) -> None:
        self._url = server.url
        self._headers = {**server.basic_auth, "Content-Type": "application/json"}

    async def _post(self, http: aiohttp.ClientSession, path: str, body: bytes) -> Any:
        async with http.post(self._url + path, data=body, headers=self._headers) as answer:
            payload = await answer.read()
            if answer.status >= 300:
                raise BenchError(f"Medusa answered {answer.status} to {path}: {payload[:300]!r}")
            return orjson.loads(payload)

    async def create_all(self, rows: Sequence[ProductRow], sales_channel_id: str) -> float:
        """Categories, then the products in requests of 1,000 (handles made unique with the id)."""
        async with aiohttp.ClientSession() as http:
            started = time.perf_counter()
            categories: dict[str, str] = {}
            for row in rows:
                if row.category_handle not in categories:
                    body = {"name": row.category_name, "handle": row.category_handle, "is_active": True}
                    answer = await self._post(http, "/admin/product-categories", orjson.dumps(body))
                    categories[row.category_handle] = answer["product_category"]["id"]
            for start in range(0, len(rows), CEILING_REQUEST):
                creates = [
                    create_payload(
                        row,
                        Placement(
                            row.handle_with_id, categories[row.category_handle], sales_channel_id, "published"
                        ),
                    )
                    for row in rows[start : start + CEILING_REQUEST]
                ]
                await self._post(http, "/admin/products/batch", _batch_body(creates, []))
            return time.perf_counter() - started

    async def update_all(
        self,
        rows: Sequence[ProductRow],
        placements: Mapping[str, tuple[Placement, MedusaIds]],
    ) -> float:
        async with aiohttp.ClientSession() as http:
            started = time.perf_counter()
            for start in range(0, len(rows), CEILING_REQUEST):
                updates = [
                    update_payload(row, *placements[row.external_id])
                    for row in rows[start : start + CEILING_REQUEST]
                ]
                await self._post(http, "/admin/products/batch", _batch_body([], updates))
            return time.perf_counter() - started


def _ledger_run(db_path: Path) -> dict[str, Any]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return dict(row)


def _seconds(run: Mapping[str, Any]) -> float:
    started = datetime.fromisoformat(str(run["started_at"]).replace("Z", "+00:00"))
    finished = datetime.fromisoformat(str(run["finished_at"]).replace("Z", "+00:00"))
    return (finished - started).total_seconds()


def _our_sync(
    shop: Shop, db_path: Path, source_url: str, label: str, concurrency: int, **settings: str
) -> PushResult:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("SYNC_")},
        "PYTHONPATH": str(REPO_ROOT),
        "SYNC_DB_PATH": str(db_path),
        "SYNC_SOURCE_URL": source_url,
        "SYNC_SINK": "medusa",
        "SYNC_MEDUSA_URL": shop.url,
        "SYNC_MEDUSA_API_KEY": shop.api_key,
        "SYNC_MEDUSA_CONCURRENCY": str(concurrency),
        "SYNC_LOG_LEVEL": "WARNING",
        **{f"SYNC_{name.upper()}": value for name, value in settings.items()},
    }
    mark = shop.log_mark()
    done = subprocess.run(
        [sys.executable, "-m", "service", "sync", "--quiet"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    run = _ledger_run(db_path)
    if done.returncode != 0 or run["status"] != "success":
        raise BenchError(f"{label}: sync ended {run['status']}: {run['error_message']}")
    stats = {key: int(run[key]) for key in ("created", "updated", "unchanged", "errors", "processed")}
    return PushResult(
        label,
        stats["created"] + stats["updated"],
        _seconds(run),
        len(shop.write_requests_since(mark)),
        stats,
    )


def _links(db_path: Path) -> dict[str, MedusaIds]:
    with sqlite3.connect(db_path) as conn:
        found = conn.execute("SELECT external_id, product_id, variant_id, price_id FROM medusa_products")
        return {external_id: MedusaIds(p, v, price) for external_id, p, v, price in found}


def measure(
    server: MedusaServer, work_dir: Path, run_dir: Path, count: int, concurrencies: Sequence[int], log: Any
) -> MedusaFigures:
    """Each fresh push gets products of its own (other ids, SKUs, handles): emptying a Medusa of 5,000
    products takes it minutes, longer than the push."""
    shop = Shop(server)
    sales_channel = shop.default_sales_channel()
    client = MinimalClient(server)
    logs = run_dir / "logs"
    # The ceiling first, then ours with the default setting: the two figures compared by the goal
    # are taken on a shop of the same size.
    rounds = [DEFAULT_CONCURRENCY, *(c for c in concurrencies if c != DEFAULT_CONCURRENCY)]
    ceiling_rows = _rows(feed_file(work_dir, count, 0, first=0))
    log(f"Medusa: the ceiling's create of {count:,} products (requests of {CEILING_REQUEST:,})")
    create_seconds = asyncio.run(client.create_all(ceiling_rows, sales_channel))
    fresh: dict[int, PushResult] = {}
    for number, concurrency in enumerate(rounds, start=1):
        feed = feed_file(work_dir, count, 0, first=number * count)
        port = free_port()
        with upstream(feed, port, logs / f"upstream-medusa-c{concurrency}.log"):
            log(f"Medusa: our fresh push of {count:,} other products, {concurrency} in flight")
            fresh[concurrency] = _our_sync(
                shop,
                run_dir / f"medusa-sync-c{concurrency}.db",
                f"http://{LOOPBACK}:{port}/products",
                f"ours, fresh, {concurrency} in flight",
                concurrency,
            )
    # The re-syncs: on the default round's products and database.
    db_path = run_dir / f"medusa-sync-c{DEFAULT_CONCURRENCY}.db"
    feed, changed_feed = (feed_file(work_dir, count, v, first=count) for v in (0, 1))
    rows, changed_rows = _rows(feed), _rows(changed_feed)
    changed_ids = {
        row.external_id
        for row, before in zip(changed_rows, rows, strict=True)
        if row.content_hash != before.content_hash
    }
    port, changed_port = free_port(), free_port()
    with (
        upstream(feed, port, logs / "upstream-medusa-same.log"),
        upstream(changed_feed, changed_port, logs / "upstream-medusa-v1.log"),
    ):
        log(f"Medusa: identical re-sync and 10% changed ({DEFAULT_CONCURRENCY} in flight, the default)")
        url = f"http://{LOOPBACK}:{port}/products"
        same = _our_sync(shop, db_path, url, "ours, identical re-sync", DEFAULT_CONCURRENCY)
        changed_url = f"http://{LOOPBACK}:{changed_port}/products"
        changed = _our_sync(shop, db_path, changed_url, "ours, 10% changed", DEFAULT_CONCURRENCY)
    links = _links(db_path)
    with sqlite3.connect(db_path) as conn:
        handles = dict(conn.execute("SELECT external_id, handle FROM medusa_products"))
        categories = dict(conn.execute("SELECT handle, category_id FROM medusa_categories"))
    reverted = [row for row in rows if row.external_id in changed_ids]
    placements = {
        row.external_id: (
            Placement(handles[row.external_id], categories[row.category_handle], sales_channel, "published"),
            links[row.external_id],
        )
        for row in reverted
    }
    log(f"Medusa: the ceiling's updates of the same {len(reverted):,} products (back to their old prices)")
    update_seconds = asyncio.run(client.update_all(reverted, placements))
    return MedusaFigures(
        fresh=fresh,
        ceiling_create=PushResult(
            "ceiling: direct batch create", count, create_seconds, -(-count // CEILING_REQUEST), {}
        ),
        same=same,
        same_read_per_second=same.stats["processed"] / same.seconds if same.seconds else 0.0,
        changed=changed,
        changed_expected=len(changed_ids),
        ceiling_update=PushResult(
            "ceiling: direct batch update",
            len(reverted),
            update_seconds,
            -(-len(reverted) // CEILING_REQUEST),
            {},
        ),
    )


def start_shop(directory: Path) -> MedusaServer:
    server = MedusaServer(directory)
    try:
        server.start()
    except (MedusaUnavailable, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        raise BenchError(f"the throwaway Medusa did not start: {exc}") from exc
    return server


def _print(figures: MedusaFigures) -> None:
    print(f"{'what':<34} {'products':>8} {'seconds':>8} {'products/s':>10} {'write requests':>14}")
    results = [*figures.fresh.values(), figures.ceiling_create, figures.same, figures.changed]
    for result in [*results, figures.ceiling_update]:
        print(
            f"{result.label:<34} {result.products:>8,} {result.seconds:>8.2f} {result.per_second:>10,.0f}"
            f" {result.write_requests:>14}"
        )
    print(
        f"identical re-sync compared {figures.same.stats['processed']:,} products at"
        f" {figures.same_read_per_second:,.0f}/s; 10% changed: {figures.changed.stats['updated']} updated"
        f" of {figures.changed_expected} changed upstream"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="requests in flight; the default's is kept",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/product-sync-bench"))
    args = parser.parse_args(argv)
    if DEFAULT_CONCURRENCY not in args.concurrency:
        args.concurrency.append(DEFAULT_CONCURRENCY)
    run_dir = Path(tempfile.mkdtemp(prefix="medusa-", dir=args.work_dir))
    server = start_shop(run_dir / "medusa")
    try:
        _print(measure(server, args.work_dir, run_dir, args.products, args.concurrency, print))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
