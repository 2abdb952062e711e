"""Command line: ``serve`` (default), ``sync``, ``runs``, ``migrate``. Settings come from SYNC_* variables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from service.logs import configure_logging
from service.settings import Settings

log = logging.getLogger("service")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ALREADY_RUNNING = 3


def _settings_from_env() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except (ValidationError, ValueError) as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def serve(settings: Settings) -> int:
    from service.app import create_app

    settings, generated = settings.with_generated_token()
    if generated is not None:
        # Printed once so the quickstart works; set SYNC_ADMIN_TOKEN(S) to choose your own.
        log.warning("no admin token configured; generated one for this process: %s", generated)
    app = create_app(settings)
    log.info("serving on http://%s:%s (database %s)", settings.host, settings.port, settings.db_path)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_timeout_s,
        access_log=logging.getLogger("aiohttp.access"),
    )
    return EXIT_OK


def migrate(settings: Settings) -> int:
    from service.ledger.db import Database

    async def _run() -> int:
        database = await Database.open(settings.db_path, settings.migrations_dir, settings.busy_timeout_s)
        await database.close()
        print(f"{settings.db_path}: schema at version {database.schema_version}")
        return EXIT_OK

    return asyncio.run(_run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="product-sync", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP service (default)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    command = args.command or "serve"
    if command == "migrate":
        return migrate(settings)
    return serve(settings)
