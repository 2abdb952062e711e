"""One pydantic-settings model for every setting, built from ``SYNC_*`` environment variables in ``main()``.

Nothing here reads the environment at import time, nor when ``Settings(...)`` is constructed (tests do
that): only :meth:`Settings.from_env` reads variables, from the mapping it is given.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service.domain.schedule import CronSchedule, InvalidSchedule, InvalidTimeZone
from service.upstream.urls import redact_url

ENV_PREFIX = "SYNC_"
DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
GENERATED_TOKEN_NAME = "generated"

SourceFormat = Literal["dummyjson", "ndjson"]
SinkKind = Literal["sqlite", "medusa"]
MedusaProductStatus = Literal["published", "draft", "proposed"]
RemovedProducts = Literal["keep", "archive", "delete"]

_OPTIONAL_FIELDS = frozenset(
    {
        "source_url",
        "source_auth_header",
        "error_retention_days",
        "run_retention_days",
        "medusa_url",
        "medusa_api_key",
        "medusa_sales_channel_id",
        "schedule",
        "webhook_secret",
        "database_url",
    }
)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value may be a secret (a token, a URL with its password), and the
    # errors are printed; each message names its variable instead.
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", env_prefix=ENV_PREFIX, hide_input_in_errors=True
    )

    # HTTP server
    host: str = "127.0.0.1"
    port: int = Field(default=9000, ge=0, le=65535)
    max_request_body_bytes: int = Field(default=64 * 1024, ge=1024)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    metrics_require_auth: bool = False

    # Ledger and catalog: the SQLite file of db_path, or PostgreSQL at database_url (for several
    # replicas on several hosts; it may hold a password, so it is a secret).
    db_path: Path = Path("data/product-sync.db")
    database_url: SecretStr | None = Field(default=None, repr=False)
    database_pool_size: int = Field(default=4, ge=2, le=64)
    # PostgreSQL: how long the server lets a transaction of ours wait on this process before it ends
    # the session (a frozen or cut-off replica would otherwise keep the write lock from the others).
    # At least a second: a busy event loop can pause that long between two statements of a batch.
    database_hold_timeout_s: float = Field(default=10.0, ge=1)
    migrations_dir: Path = DEFAULT_MIGRATIONS_DIR
    busy_timeout_s: float = Field(default=5.0, gt=0)
    error_retention_days: int | None = Field(default=None, ge=1)
    run_retention_days: int | None = Field(default=None, ge=1)

    # Admin auth: token name -> token. The name is what the ledger records as "triggered by".
    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    # One token named "admin", added to admin_tokens (SYNC_ADMIN_TOKEN, the quickstart's variable).
    admin_token: SecretStr | None = Field(default=None, exclude=True, repr=False)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)

    # Upstream feed; no URL means the built-in demo upstream on loopback.
    source_url: str | None = None
    source_format: SourceFormat = "dummyjson"
    source_headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    source_auth_header: SecretStr | None = None
    page_size: int = Field(default=100, ge=1, le=10_000)
    # DummyJSON pages in flight at once (the replaced job fetched with 5 workers); 1 pages one by one.
    page_window: int = Field(default=5, ge=1, le=64)
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

    # Where products go: the SQLite catalog in db_path, or a Medusa v2 shop's Admin API.
    sink: SinkKind = "sqlite"
    medusa_url: str | None = None
    medusa_api_key: SecretStr | None = None
    medusa_sales_channel_id: str | None = None  # none: the store's default sales channel
    medusa_product_status: MedusaProductStatus = "published"
    # One batch request's body at most (Medusa refuses bodies over 2 MB).
    medusa_batch_bytes: int = Field(default=1_500_000, ge=10_000, le=2_000_000)
    # Requests to Medusa in flight at once (batch writes, and lookups): while one is written, the next
    # is on its way, so Medusa does not wait for us between requests.
    medusa_concurrency: int = Field(default=2, ge=1, le=16)

    # Engine
    # Items per write transaction (a feed is read and mapped in chunks of at most 1,000 whatever this is).
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    # Processes mapping a large feed's chunks; none set means one per usable CPU, at most 4.
    mapping_workers: int | None = Field(default=None, ge=1, le=32)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    # A run in which more than this fraction of the items are item errors ends in error (the products
    # that did map are kept): a feed that is mostly broken is a failed sync, not a successful one.
    max_error_fraction: float = Field(default=0.5, ge=0, le=1)
    # Products the feed no longer lists, after a run that read all of it: kept, archived (a draft in a
    # shop), or deleted. A run that would remove more than the fraction removes nothing and fails.
    removed_products: RemovedProducts = "keep"
    removed_max_fraction: float = Field(default=0.5, ge=0, le=1)

    # Schedule: a cron expression (5 fields, or 6 with seconds first, as the replaced job's
    # "*/30 * * * * *"). None: runs start only when triggered, so a new install never writes to a shop
    # before its operator has chosen to (and could preview the run first).
    schedule: str | None = None
    schedule_tz: str = "UTC"
    # At start-up, one run when the schedule's last due time passed while no process was running it.
    schedule_catch_up: bool = True

    # Notifications: at the end of every run, a JSON event signed with the secret is POSTed to each URL.
    webhook_url: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_secret: SecretStr | None = Field(default=None, repr=False)
    webhook_attempts: int = Field(default=8, ge=1, le=50)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_base_delay_s: float = Field(default=2.0, ge=0)
    webhook_retry_max_delay_s: float = Field(default=600.0, ge=0)

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

    @field_validator("admin_tokens", "source_headers", mode="before")
    @classmethod
    def _pairs_from_text(cls, value: Any) -> Any:
        return _parse_pairs(value, ":") if isinstance(value, str) else value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _urls_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_url")
    @classmethod
    def _urls_are_http(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"SYNC_WEBHOOK_URL must hold http:// or https:// URLs, got {url!r}")
        return urls

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        if self.webhook_url and (self.webhook_secret is None or not self.webhook_secret.get_secret_value()):
            # An unsigned event could be forged by anyone who finds the receiver's URL.
            raise ValueError("SYNC_WEBHOOK_URL needs SYNC_WEBHOOK_SECRET: every event is signed with it")
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(*_OPTIONAL_FIELDS, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="before")
    @classmethod
    def _merge_admin_token(cls, data: Any) -> Any:
        # SYNC_ADMIN_TOKEN is the token named "admin"; it wins over an "admin" in SYNC_ADMIN_TOKENS.
        if isinstance(data, dict) and data.get("admin_token") == "":
            # An empty token can never be presented: the operator meant to set one.
            raise ValueError("SYNC_ADMIN_TOKEN is empty: set a token, or leave the variable unset")
        if isinstance(data, dict) and data.get("admin_token") is not None:
            tokens = data.get("admin_tokens") or {}
            if isinstance(tokens, str):
                tokens = _parse_pairs(tokens, ":")
            data = {**data, "admin_tokens": {**tokens, "admin": data["admin_token"]}}
        return data

    @model_validator(mode="after")
    def _schedule_is_usable(self) -> Settings:
        try:
            self.cron_schedule()
        except InvalidTimeZone as exc:
            raise ValueError(f"SYNC_SCHEDULE_TZ: {exc}") from None
        except InvalidSchedule as exc:
            raise ValueError(f"SYNC_SCHEDULE: {exc}") from None
        return self

    def database_target(self) -> str:
        """The database as logs show it: the SQLite file, or the PostgreSQL URL without a password."""
        if self.database_url is None:
            return str(self.db_path)
        return redact_url(self.database_url.get_secret_value())

    def cron_schedule(self) -> CronSchedule | None:
        """The schedule of these settings, parsed (checked when the settings were built)."""
        return CronSchedule.parse(self.schedule, self.schedule_tz) if self.schedule else None

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("postgresql://", "postgres://")):
            # Not echoed: the value may hold a password.
            raise ValueError("SYNC_DATABASE_URL must be a postgresql:// URL (unset: the SQLite file)")
        return url

    @model_validator(mode="after")
    def _medusa_needs_its_shop(self) -> Settings:
        if self.sink == "medusa":
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("medusa_url", "medusa_api_key")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"SYNC_SINK=medusa needs {' and '.join(missing)}")
            assert self.medusa_url is not None
            if not self.medusa_url.startswith(("http://", "https://")):
                raise ValueError(
                    f"SYNC_MEDUSA_URL must be an http:// or https:// URL, got {self.medusa_url!r}"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the constructor is given: from_env hands it the variables it read.
        return (init_settings,)

    def with_generated_token(self) -> tuple[Settings, str | None]:
        """When no admin token is configured, add a random one so the quickstart works."""
        if self.admin_tokens:
            return self, None
        token = secrets.token_urlsafe(24)
        return self.model_copy(update={"admin_tokens": {GENERATED_TOKEN_NAME: SecretStr(token)}}), token

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``SYNC_*`` variables; unknown ``SYNC_*`` names are an error, not ignored."""
        known = {f"{ENV_PREFIX}{name.upper()}" for name in cls.model_fields}
        for key in environ:
            if key.startswith(ENV_PREFIX) and key not in known:
                raise ValueError(f"unknown setting {key}")
        return cls(**_EnvironSource(cls, environ)())


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, over the mapping given instead of ``os.environ``.

    So ``main()`` (with ``os.environ``) and the tests (with a dict) build settings the same way, and
    constructing ``Settings(...)`` never picks up the variables of whoever runs the tests.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = {key.lower(): value for key, value in environ.items()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ


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
