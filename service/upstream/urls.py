"""Upstream URLs as they may be shown: in logs, in the ledger's ``runs.source``, in API answers."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with its user-info and every query value replaced by ``***`` (they may hold secrets), and
    no fragment: ``http://***@host/products?api_key=***``. Query names stay, to tell feeds apart."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # not even a URL: show nothing of it rather than a secret
    _userinfo, at, host = parts.netloc.rpartition("@")
    # A piece without "=" may be a bare key (``?SECRET``): only what stands before an "=" is a name.
    query = "&".join(
        f"{piece.partition('=')[0]}={REDACTED}" if "=" in piece else REDACTED
        for piece in parts.query.split("&")
        if piece
    )
    netloc = f"{REDACTED}@{host}" if at else host
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
