"""One pydantic model for every setting, built from ``SYNC_*`` environment variables in ``main()``.

Nothing here reads the environment at import time: tests construct ``Settings(...)`` directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ENV_PREFIX = "SYNC_"
DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
GENERATED_TOKEN_NAME = "generated"

SourceFormat = Literal["dummyjson", "ndjson"]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # HTTP server
    host: str = "127.0.0.1"
    port: int = Field(default=9000, ge=0, le=65535)
    max_request_body_bytes: int = Field(default=64 * 1024, ge=1024)
    cors_origins: tuple[str, ...] = ()
    metrics_require_auth: bool = False

    # Ledger and catalog
    db_path: Path = Path("data/product-sync.db")
    migrations_dir: Path = DEFAULT_MIGRATIONS_DIR
    busy_timeout_s: float = Field(default=5.0, gt=0)
    error_retention_days: int | None = Field(default=None, ge=1)
    run_retention_days: int | None = Field(default=None, ge=1)

    # Admin auth: token name -> token. The name is what the ledger records as "triggered by".
    admin_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)

    # Upstream feed; no URL means the built-in demo upstream on loopback.
    source_url: str | None = None
    source_format: SourceFormat = "dummyjson"
    source_headers: dict[str, str] = Field(default_factory=dict)
    source_auth_header: SecretStr | None = None
    page_size: int = Field(default=100, ge=1, le=10_000)
    demo_product_count: int = Field(default=194, ge=0)
    max_line_bytes: int = Field(default=1024 * 1024, ge=1024)
    # What one DummyJSON page may cost: its body in memory, and its parse on the event loop.
    max_page_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    run_timeout_s: float = Field(default=3600.0, gt=0)
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=30.0, ge=0)

    # Engine
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # Processes mapping a large feed's chunks; none set means one per usable CPU, at most 4.
    mapping_workers: int | None = Field(default=None, ge=1, le=32)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    # A run in which more than this fraction of the items are item errors ends in error (the products
    # that did map are kept): a feed that is mostly broken is a failed sync, not a successful one.
    max_error_fraction: float = Field(default=0.5, ge=0, le=1)

    # Liveness: a running run whose progress is older than this is failed as stalled.
    stall_timeout_s: float = Field(default=300.0, gt=0)
    watchdog_interval_s: float = Field(default=0.5, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0)

    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = "INFO"

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    def with_generated_token(self) -> tuple[Settings, str | None]:
        """When no admin token is configured, add a random one so the quickstart works."""
        if self.admin_tokens:
            return self, None
        token = secrets.token_urlsafe(24)
        return self.model_copy(update={"admin_tokens": {GENERATED_TOKEN_NAME: SecretStr(token)}}), token

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``SYNC_*`` variables; unknown ``SYNC_*`` names are an error, not ignored."""
        values: dict[str, Any] = {}
        tokens: dict[str, str] = {}
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name == "admin_token":
                tokens["admin"] = raw
            elif name == "admin_tokens":
                tokens = {**_parse_pairs(raw, ":"), **tokens}
            elif name in cls.model_fields:
                values[name] = _parse_env_value(name, raw)
            else:
                raise ValueError(f"unknown setting {key}")
        if tokens:
            values["admin_tokens"] = tokens
        return cls.model_validate(values)


_OPTIONAL_FIELDS = frozenset(
    {"source_url", "source_auth_header", "error_retention_days", "run_retention_days"}
)


def _parse_pairs(raw: str, separator: str) -> dict[str, str]:
    """``name:value,name2:value2`` (or ``;``-separated, for values containing commas)."""
    pairs: dict[str, str] = {}
    items = raw.split(";") if ";" in raw else raw.split(",")
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition(separator)
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected name{separator}value, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def _parse_env_value(name: str, raw: str) -> Any:
    if name == "source_headers":
        return _parse_pairs(raw, ":")
    if name == "cors_origins":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if raw == "" and name in _OPTIONAL_FIELDS:
        return None
    return raw
