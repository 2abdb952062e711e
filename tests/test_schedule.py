"""The schedule: cron read as the replaced job wrote it, ticks that start runs through the ledger's rules,
skipped ticks recorded, one run per tick across processes, and one catch-up run after downtime."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.domain.schedule import CronSchedule, InvalidSchedule, InvalidTimeZone
from service.ledger.records import TickSkipped, TickStarted, TickTaken
from service.ledger.runs import Ledger
from service.settings import Settings
from service.support.timeutil import from_iso, utc_now
from tests.conftest import AUTH, BOTH_BACKENDS, AiohttpClient, make_settings, wait_for_status, wait_until
from tests.ledger_rows import query
from tests.service_process import ServiceProcess, ticks_taken_elsewhere
from tests.test_cli import run_cli
from tests.upstream import FeedControl

EVERY_SECOND = "* * * * * *"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- reading the expression ---------------------------------------------------------------------


def test_six_fields_put_seconds_first_as_the_replaced_job_did() -> None:
    every_30_s = CronSchedule.parse("*/30 * * * * *")
    assert every_30_s.next_after(at("2026-12-01T17:00:10Z")) == at("2026-12-01T17:00:30Z")
    assert every_30_s.next_after(at("2026-12-01T17:00:30Z")) == at("2026-12-01T17:01:00Z")
    # Read with seconds last, this would be every second of minutes 0 and 30.
    assert every_30_s.next_after(at("2026-12-01T17:00:31Z")) == at("2026-12-01T17:01:00Z")


def test_five_fields_and_the_latest_due_time() -> None:
    every_5_min = CronSchedule.parse("*/5  *  * * *")  # extra spaces are only spaces
    assert every_5_min.expression == "*/5 * * * *"
    assert every_5_min.next_after(at("2026-12-01T17:03:00Z")) == at("2026-12-01T17:05:00Z")
    assert every_5_min.latest_at_or_before(at("2026-12-01T17:03:00Z")) == at("2026-12-01T17:00:00Z")
    assert every_5_min.latest_at_or_before(at("2026-12-01T17:05:00Z")) == at("2026-12-01T17:05:00Z")


def test_the_time_zone_decides_the_hour_daylight_saving_included() -> None:
    nine_in_berlin = CronSchedule.parse("0 9 * * *", "Europe/Berlin")
    assert nine_in_berlin.next_after(at("2026-12-01T12:00:00Z")) == at("2026-12-02T08:00:00Z")  # CET
    assert nine_in_berlin.next_after(at("2026-07-01T12:00:00Z")) == at("2026-07-02T07:00:00Z")  # CEST


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "has 3 fields"),
        ("0 0 * * * * 2026", "has 7 fields"),
        ("61 * * * *", "not a cron expression"),
        ("every five minutes past noon", "not a cron expression"),
        ("0 0 31 2 *", "not a cron expression"),  # never due: 31 February
    ],
)
def test_an_unusable_expression_is_refused_saying_why(expression: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        CronSchedule.parse(expression)


def test_settings_name_the_variable_that_is_wrong() -> None:
    with pytest.raises(ValueError, match="SYNC_SCHEDULE: '61 \\* \\* \\* \\*' is not a cron expression"):
        Settings.from_env({"SYNC_SCHEDULE": "61 * * * *"})
    with pytest.raises(ValueError, match="SYNC_SCHEDULE_TZ: unknown time zone 'Mars/Olympus'"):
        Settings.from_env({"SYNC_SCHEDULE": "* * * * *", "SYNC_SCHEDULE_TZ": "Mars/Olympus"})
    with pytest.raises(InvalidTimeZone):
        CronSchedule.parse("* * * * *", "Mars/Olympus")
    assert Settings.from_env({"SYNC_SCHEDULE": ""}).cron_schedule() is None
    assert Settings.from_env({}).cron_schedule() is None


async def test_an_invalid_schedule_stops_the_service_at_start_up(tmp_path: Path) -> None:
    from tests.test_cli import cli_env

    result = await run_cli("serve", env=cli_env(tmp_path / "x.db", SYNC_SCHEDULE="*/30 * * *"))
    assert result.code == 2, result
    assert "SYNC_SCHEDULE" in result.stderr and "has 4 fields" in result.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


# --- the ledger's rules for a tick --------------------------------------------------------------


@BOTH_BACKENDS
async def test_a_tick_is_claimed_once_and_skips_while_a_run_is_in_progress(ledger: Ledger) -> None:
    due = at("2026-12-01T17:00:30Z")
    first = await ledger.claim_tick(due, "*/30 * * * * * (UTC)", "feed", catch_up=False)
    assert isinstance(first, TickStarted)
    assert first.run.started_via == "schedule" and first.run.triggered_by == "schedule"
    assert isinstance(await ledger.claim_tick(due, "*/30 * * * * * (UTC)", "feed", catch_up=False), TickTaken)

    later = at("2026-12-01T17:01:00Z")
    skipped = await ledger.claim_tick(later, "*/30 * * * * * (UTC)", "feed", catch_up=False)
    assert isinstance(skipped, TickSkipped) and skipped.running.id == first.run.id
    assert await ledger.tick_counts() == {"started": 1, "skipped": 1}
    assert await ledger.latest_tick_due() == later

    await ledger.finish_run(first.run.id, "success")
    after = await ledger.claim_tick(at("2026-12-01T17:01:30Z"), "s", "feed", catch_up=True)
    assert isinstance(after, TickStarted) and after.run.id == first.run.id + 1


# --- the service on a schedule -------------------------------------------------------------------


async def test_a_seconds_schedule_starts_runs_and_status_shows_the_next(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, source_url=upstream_url, schedule=EVERY_SECOND)
    caplog.set_level(logging.INFO)
    client = await aiohttp_client(create_app(settings))
    db = settings.db_path
    await wait_until(
        lambda: (
            query(db, "SELECT count(*) FROM runs WHERE status = 'success' AND started_via = 'schedule'")
            >= [(2,)]
        ),
        what="two scheduled runs",
    )
    data = await wait_for_status(client, lambda d: d["startedVia"] == "schedule")
    assert data["schedule"] == {"expression": EVERY_SECOND, "timezone": "UTC"}
    next_run = from_iso(data["nextRunAt"])
    assert 0 < (next_run - utc_now()).total_seconds() <= 1.0 and next_run.microsecond == 0
    assert query(db, "SELECT DISTINCT triggered_by FROM runs") == [("schedule",)]
    assert "✅ Scheduled sync completed successfully" in caplog.messages
    assert "✅ Manual sync completed successfully" not in caplog.messages

    metrics = await (await client.get("/metrics")).text()
    assert "product_sync_schedule_next_run_timestamp_seconds " in metrics
    started = query(db, "SELECT count(*) FROM schedule_ticks WHERE outcome = 'started'")[0][0]
    assert started >= 2 and 'product_sync_schedule_ticks_total{outcome="started"}' in metrics

    # A manual trigger still comes on top, and is recorded as manual with the token's name.
    await wait_for_status(client, lambda d: not d["isRunning"])
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    if response.status == 200:
        run_id = (await response.json())["data"]["runId"]
        assert query(db, "SELECT started_via, triggered_by FROM runs WHERE id = ?", (run_id,)) == [
            ("manual", "admin")
        ]
    else:  # a tick won the race for the idle moment: the 409 names the scheduled run
        assert response.status == 409


async def test_without_a_schedule_status_says_so(client: TestClient[web.Request, web.Application]) -> None:
    data = await wait_for_status(client, lambda d: True)
    assert data["nextRunAt"] is None and data["schedule"] is None
    assert "product_sync_schedule" not in await (await client.get("/metrics")).text()


async def test_a_tick_during_a_run_is_skipped_and_recorded(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str, feed: FeedControl
) -> None:
    feed.gate = asyncio.Event()  # the first run waits after its first page until the gate opens
    settings = make_settings(tmp_path, source_url=upstream_url, page_size=50, schedule=EVERY_SECOND)
    client = await aiohttp_client(create_app(settings))
    db = settings.db_path
    await wait_until(
        lambda: query(db, "SELECT count(*) FROM schedule_ticks WHERE outcome = 'skipped'") >= [(2,)],
        what="two skipped ticks",
    )
    (running,) = query(db, "SELECT id FROM runs WHERE status = 'running'")
    skipped = query(db, "SELECT DISTINCT run_id FROM schedule_ticks WHERE outcome = 'skipped'")
    assert skipped == [running]  # each skip names the run that was in progress
    metrics = await (await client.get("/metrics")).text()
    assert 'product_sync_schedule_ticks_total{outcome="skipped"}' in metrics
    assert 'product_sync_schedule_ticks_total{outcome="skipped"} 0.0' not in metrics

    feed.gate.set()
    await wait_until(
        lambda: query(db, "SELECT status FROM runs WHERE id = ?", running) == [("success",)],
        what="the gated run to finish",
    )
    # Skipping is not an error: no run failed, and the ticks after the gate opened start runs again.
    await wait_until(
        lambda: query(db, "SELECT count(*) FROM runs WHERE status = 'success'") >= [(2,)],
        what="a run after the skipped ticks",
    )
    assert query(db, "SELECT count(*) FROM runs WHERE status = 'error'") == [(0,)]


async def test_two_processes_on_one_database_start_one_run_per_tick(
    tmp_path: Path, upstream_url: str
) -> None:
    db = tmp_path / "shared.db"
    env = {"SYNC_SCHEDULE": EVERY_SECOND, "SYNC_LOG_LEVEL": "DEBUG", "SYNC_SCHEDULE_CATCH_UP": "false"}
    services = [ServiceProcess(db, upstream_url, tmp_path / f"service-{n}.log", **env) for n in (1, 2)]
    try:
        for service in services:
            await service.start()
        await wait_until(
            lambda: query(db, "SELECT count(*) FROM schedule_ticks") >= [(6,)], what="six ticks", timeout_s=30
        )
    finally:
        for service in services:
            if service.process is not None and service.process.returncode is None:
                service.send_signal(signal.SIGTERM)
                await service.wait_exit()

    ticks = query(db, "SELECT due_at, outcome, run_id, claimed_by FROM schedule_ticks ORDER BY due_at")
    started = [run_id for _, outcome, run_id, _ in ticks if outcome == "started"]
    schedule_runs = [run_id for (run_id,) in query(db, "SELECT id FROM runs WHERE started_via = 'schedule'")]
    assert sorted(started) == schedule_runs  # every scheduled run is one tick's, and each tick one run
    claimed_by = {due: owner for due, _, _, owner in ticks}

    # Both processes woke for the ticks: each one a process found taken was claimed by the other one.
    assert ticks_taken_elsewhere(services, claimed_by) >= 3


async def test_one_catch_up_run_after_downtime_never_a_burst(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str
) -> None:
    db = tmp_path / "sync.db"

    async def serve_until_a_tick(**overrides: Any) -> TestClient[web.Request, web.Application]:
        before = query(db, "SELECT count(*) FROM schedule_ticks")[0][0] if db.exists() else 0
        client = await aiohttp_client(
            create_app(make_settings(tmp_path, source_url=upstream_url, schedule=EVERY_SECOND, **overrides))
        )
        await wait_until(lambda: query(db, "SELECT count(*) FROM schedule_ticks")[0][0] > before)
        return client

    # A new database has missed nothing.
    first = await serve_until_a_tick()
    assert query(db, "SELECT count(*) FROM schedule_ticks WHERE catch_up = 1") == [(0,)]
    (last_before,) = query(db, "SELECT max(due_at) FROM schedule_ticks")[0]
    await first.close()

    await asyncio.sleep(2.5)  # two or three ticks fall due while no process runs
    started = utc_now()
    second = await serve_until_a_tick()
    catch_ups = query(db, "SELECT due_at, outcome FROM schedule_ticks WHERE catch_up = 1")
    assert len(catch_ups) == 1, catch_ups
    ((due_at, outcome),) = catch_ups
    assert outcome == "started"
    # The latest missed due time (the second the service started in), not the first one missed.
    assert from_iso(due_at) >= started.replace(microsecond=0)
    assert (from_iso(due_at) - from_iso(last_before)).total_seconds() >= 2
    await second.close()

    await asyncio.sleep(2.5)
    third = await serve_until_a_tick(schedule_catch_up=False)
    assert query(db, "SELECT count(*) FROM schedule_ticks WHERE catch_up = 1") == [(1,)]
    await third.close()
