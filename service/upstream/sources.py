"""The feed of a run, by format; every request goes through the run's one ``aiohttp.ClientSession``."""

from __future__ import annotations

import aiohttp

from service.settings import Settings
from service.upstream.dummyjson import DummyJsonSource
from service.upstream.feed import ReadProgress, Source
from service.upstream.ndjson import NdjsonSource


def source_for(
    settings: Settings, http: aiohttp.ClientSession, url: str, progress: ReadProgress | None = None
) -> Source:
    if settings.source_format == "ndjson":
        return NdjsonSource(http, url, settings, progress=progress)
    return DummyJsonSource(http, url, settings, progress=progress)
