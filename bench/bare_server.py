"""The reference point for the load part: a bare aiohttp handler answering constant JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiohttp import web

_BODY = b'{"status":"success","data":{"isRunning":false}}'


async def constant(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = web.Application()
    app.router.add_get("/", constant)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
