"""product-sync: pull a product catalog from an upstream feed into SQLite, with an auditable run ledger.

Commands: serve (default), sync, runs, migrate. Settings come from SYNC_* environment variables
(e.g. SYNC_DB_PATH, SYNC_SOURCE_URL, SYNC_ADMIN_TOKEN); see docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from service.api.schemas import RunList, run_model
from service.catalog.medusa.shop import ShopUnusable
from service.cli.progress import ProgressReporter, logs_above_the_bar, summary_lines
from service.cli.runs_table import format_runs_table
from service.database.access import Row
from service.database.errors import STORAGE_FAULTS
from service.database.migrations import MigrationError
from service.database.readonly import query_read_only
from service.ledger import queries
from service.ledger.records import NoRunRunning, RunAlreadyRunning, RunRecord
from service.resources import open_migrated, open_sync_stack
from service.settings import Settings
from service.support.logs import configure_logging
from service.support.tuning import freeze_start_up_objects, tune_process

log = logging.getLogger("service")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ALREADY_RUNNING = 3

POLL_INTERVAL_S = 0.5
# What a missing, unwritable, locked or corrupt database file raises: reported in one line, exit 1.
_STORAGE_ERRORS = (*STORAGE_FAULTS, MigrationError, OSError, ShopUnusable)
RUN_STATUSES = ("running", "success", "error", "cancelled")

_SYNC_EPILOG = """exit codes:
  0  the run succeeded
  1  the run failed or was cancelled (Ctrl-C / SIGTERM cancel it), or the database could not be opened
  2  invalid settings
  3  a run is already in progress (in a service or another sync sharing the database)"""


def _settings_from_env() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except (ValidationError, ValueError) as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def cli_identity() -> str:
    """What the ledger records as ``triggered_by`` for a run started from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid (e.g. a container's arbitrary user)
        return f"cli:uid{os.getuid()}"


# --- serve ---------------------------------------------------------------------------------------


async def _freeze_start_up_objects(app: web.Application) -> None:
    freeze_start_up_objects()


def serve(settings: Settings) -> int:
    from service.app import create_app

    settings, generated = settings.with_generated_token()
    if generated is not None:
        # Printed once so the quickstart works; set SYNC_ADMIN_TOKEN(S) to choose your own.
        log.warning("no admin token configured; generated one for this process: %s", generated)
    app = create_app(settings)
    app.on_startup.append(_freeze_start_up_objects)  # after the resources' cleanup_ctx start-up
    log.info(
        "serving on http://%s:%s (database %s)", settings.host, settings.port, settings.database_target()
    )
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            shutdown_timeout=settings.shutdown_timeout_s,
            access_log=logging.getLogger("aiohttp.access"),
        )
    except (ShopUnusable, *STORAGE_FAULTS, MigrationError, OSError) as exc:
        # The database (a file that cannot be opened, a server out of reach), the shop, or the port (in
        # use): said plainly, without a traceback.
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --- sync ----------------------------------------------------------------------------------------


def sync(settings: Settings, quiet: bool, dry_run: bool = False) -> int:
    try:
        return asyncio.run(_sync(settings, quiet, dry_run))
    except _STORAGE_ERRORS as exc:
        print(f"sync failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def _sync(settings: Settings, quiet: bool, dry_run: bool) -> int:
    who = cli_identity()
    async with open_sync_stack(settings) as stack:
        runner = stack.runner
        try:
            run = await runner.trigger(who, via="cli", dry_run=dry_run)
        except RunAlreadyRunning as exc:
            running = exc.running
            print(
                f"a sync is already running: run {running.id}, started {running.started_at} "
                f"by {running.triggered_by}",
                file=sys.stderr,
            )
            return EXIT_ALREADY_RUNNING

        cancels: list[asyncio.Task[None]] = []

        async def cancel() -> None:
            if runner.current_run_id() == run.id:
                with contextlib.suppress(NoRunRunning):  # it finished meanwhile
                    await runner.cancel(who)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # A signal cancels the run (recorded as cancelled by this user) instead of killing the process.
            loop.add_signal_handler(signum, lambda: cancels.append(asyncio.ensure_future(cancel())))
        interactive = sys.stdout.isatty() and not quiet
        try:
            reporter = ProgressReporter(sys.stdout, interactive=interactive)
            with logs_above_the_bar() if interactive else contextlib.nullcontext():
                outcome = asyncio.ensure_future(runner.wait())
                while not outcome.done():
                    await asyncio.wait({outcome}, timeout=POLL_INTERVAL_S)
                    current = await stack.ledger.get_run(run.id)
                    if current is not None and not quiet and current.is_running:
                        reporter.update(current)
                final = outcome.result()
                if not quiet:
                    reporter.finish(final)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if quiet:
            for line in summary_lines(final):
                print(line)
        if stack.notifier is not None:
            # After the outcome is printed: one attempt at each webhook, so a run from cron is told
            # too. What fails here stays pending for the service (or the next sync) to retry.
            await stack.notifier.deliver_due()
        return EXIT_OK if final.status == "success" else EXIT_FAILED


# --- runs ----------------------------------------------------------------------------------------


def runs(settings: Settings, limit: int, status: str | None, as_json: bool) -> int:
    # Read-only, for auditors who may not write the database or its directory: no migration, no WAL
    # switch, no file created (see query_read_only); on PostgreSQL, no migration either.
    params = {"limit": limit, "before_id": None, "status": status}
    try:
        if settings.database_url is None:
            rows: Sequence[Row] = query_read_only(
                settings.db_path, settings.migrations_dir, queries.LIST_RUNS, params, settings.busy_timeout_s
            )
        else:
            rows = asyncio.run(_read_runs(settings, params))
    except _STORAGE_ERRORS as exc:
        print(f"cannot read runs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    records = [RunRecord.from_row(row) for row in rows]
    if as_json:
        print(RunList(runs=[run_model(r) for r in records], nextCursor=None).model_dump_json(indent=2))
    else:
        print(format_runs_table(records))
    return EXIT_OK


async def _read_runs(settings: Settings, params: dict[str, Any]) -> Sequence[Row]:
    database = await open_migrated(settings, migrate=False)
    try:
        return await database.fetch_all(queries.LIST_RUNS, params)
    finally:
        await database.close()


# --- migrate -------------------------------------------------------------------------------------


def migrate(settings: Settings) -> int:
    async def _run() -> Sequence[Row]:
        database = await open_migrated(settings)
        try:
            return await database.fetch_all(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
        finally:
            await database.close()

    try:
        applied = asyncio.run(_run())
    except _STORAGE_ERRORS as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    version = applied[-1]["version"] if applied else 0
    print(f"{settings.database_target()}: schema at version {version}")
    for row in applied:
        print(f"  {row['version']:04d}_{row['name']}  applied {row['applied_at']}")
    return EXIT_OK


# --- arguments -----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="product-sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve",
        help="run the HTTP service (the default command)",
        description="Run the HTTP service on SYNC_HOST:SYNC_PORT (default 127.0.0.1:9000).",
    )
    sync_parser = commands.add_parser(
        "sync",
        help="run one sync in the foreground and wait for it",
        description=(
            "Run one sync in this process, recorded in the same ledger and under the same "
            "one-run-at-a-time rule as the service. Shows a progress bar on a terminal, plain lines "
            "otherwise, then a summary. Logs go to stderr."
        ),
        epilog=_SYNC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync_parser.add_argument("--quiet", action="store_true", help="print only the summary")
    sync_parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read and compare everything, write nothing: the summary says what a sync would do",
    )
    runs_parser = commands.add_parser(
        "runs",
        help="list recent runs from the ledger",
        description=(
            "List recent runs, newest first, from the ledger at SYNC_DB_PATH. Only reads: never creates, "
            "migrates or writes the database, so it needs no write access to its directory."
        ),
    )
    runs_parser.add_argument("--limit", type=_positive_int, default=20, help="how many runs (default 20)")
    runs_parser.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    runs_parser.add_argument("--json", action="store_true", help="print JSON (the API's Run objects)")
    commands.add_parser(
        "migrate",
        help="apply database migrations and exit",
        description="Apply pending migrations to SYNC_DB_PATH and list the applied ones.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    tune_process()
    args = build_parser().parse_args(argv)
    settings = _settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    command = args.command or "serve"
    if command == "sync":
        return sync(settings, args.quiet, args.dry_run)
    if command == "runs":
        return runs(settings, args.limit, args.status, args.json)
    if command == "migrate":
        return migrate(settings)
    return serve(settings)
