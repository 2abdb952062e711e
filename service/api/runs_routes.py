"""Run history for audits: newest first, cursor-paged, with each run's item errors."""

from __future__ import annotations

from aiohttp import web

from service.api.errors import STORAGE_ERRORS, ApiError, could_not, json_response
from service.api.keys import LEDGER, OUTBOX
from service.api.schemas import (
    RunDetail,
    RunDetailResponse,
    RunList,
    RunListResponse,
    change_item,
    delivery_model,
    error_item,
    run_model,
)

routes = web.RouteTableDef()

_STATUSES = frozenset({"running", "success", "error", "cancelled"})
MAX_PAGE = 200
_MAX_ID = 2**63 - 1


def _int_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


@routes.get("/admin/sync/runs")
async def list_runs(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 20, 1, MAX_PAGE)
    assert limit is not None
    before_id = _int_param(request, "cursor", None, 1, 2**62)
    status = request.query.get("status") or None
    if status is not None and status not in _STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(sorted(_STATUSES))}")
    try:
        runs = await request.app[LEDGER].list_runs(limit + 1, before_id, status)
    except STORAGE_ERRORS as exc:
        raise could_not("list the runs", exc) from exc
    page, more = runs[:limit], len(runs) > limit
    next_cursor = str(page[-1].id) if more and page else None
    return json_response(
        RunListResponse(data=RunList(runs=[run_model(r) for r in page], nextCursor=next_cursor))
    )


@routes.get("/admin/sync/runs/{run_id}")
async def run_detail(request: web.Request) -> web.Response:
    try:
        run_id = int(request.match_info["run_id"])
    except ValueError:
        raise ApiError(404, "Run not found") from None
    if not 0 < run_id <= _MAX_ID:  # beyond SQLite's INTEGER, no run can have this id
        raise ApiError(404, "Run not found")
    ledger = request.app[LEDGER]
    try:
        run = await ledger.get_run(run_id)
    except STORAGE_ERRORS as exc:
        raise could_not(f"read run {run_id}", exc) from exc
    if run is None:
        raise ApiError(404, "Run not found")
    limit = _int_param(request, "errorsLimit", 50, 1, MAX_PAGE)
    assert limit is not None
    after_id = _int_param(request, "errorsCursor", None, 0, 2**62)
    try:
        errors = await ledger.list_run_errors(run_id, limit + 1, after_id)
    except STORAGE_ERRORS as exc:
        raise could_not(f"read run {run_id}", exc) from exc
    changes_limit = _int_param(request, "changesLimit", 50, 1, MAX_PAGE)
    assert changes_limit is not None
    changes_after = _int_param(request, "changesCursor", None, 0, 2**62)
    try:
        deliveries = await request.app[OUTBOX].deliveries_of(run_id)
        changes = await ledger.list_run_changes(run_id, changes_limit + 1, changes_after)
    except STORAGE_ERRORS as exc:
        raise could_not(f"read run {run_id}", exc) from exc
    changes_page, more_changes = changes[:changes_limit], len(changes) > changes_limit
    page, more = errors[:limit], len(errors) > limit
    detail = RunDetail(
        run=run_model(run),
        errors=[error_item(e) for e in page],
        nextErrorsCursor=str(page[-1].id) if more and page else None,
        webhooks=[delivery_model(d) for d in deliveries],
        changes=[change_item(c) for c in changes_page],
        nextChangesCursor=str(changes_page[-1].id) if more_changes and changes_page else None,
    )
    return json_response(RunDetailResponse(data=detail))
