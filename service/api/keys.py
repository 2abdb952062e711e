"""Typed keys for what the application holds; each value is owned by one cleanup_ctx in service.app."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from service.api.auth import Authenticator, Principal
from service.api.http_metrics import HttpMetrics
from service.api.status_body import StatusBodyCache
from service.catalog.sink import SinkInfo
from service.ledger.runs import Ledger
from service.notify.outbox import WebhookOutbox
from service.settings import Settings
from service.sync.job import SyncJob
from service.sync.runner import SyncRunner
from service.sync.scheduler import Scheduler

SETTINGS = web.AppKey("settings", Settings)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
LEDGER = web.AppKey("ledger", Ledger)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
SOURCE_URL = web.AppKey("source_url", str)
SYNC_JOB: web.AppKey[SyncJob] = web.AppKey("sync_job")
RUNNER = web.AppKey("runner", SyncRunner)
METRICS = web.AppKey("metrics", HttpMetrics)
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
STATUS_BODY_CACHE = web.AppKey("status_body_cache", StatusBodyCache)
SINK_INFO = web.AppKey("sink_info", SinkInfo)
# None when no schedule is set: runs then start only when triggered.
SCHEDULER: web.AppKey[Scheduler | None] = web.AppKey("scheduler")
OUTBOX = web.AppKey("outbox", WebhookOutbox)
PRINCIPAL = web.RequestKey("principal", Principal)
