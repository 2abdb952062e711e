"""The README documents every setting, so the table cannot drift from the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [
        f"SYNC_{name.upper()}"
        for name in Settings.model_fields
        if f"| `SYNC_{name.upper()}` |" not in text and name != "admin_tokens"
    ]
    assert missing == []
    assert "| `SYNC_ADMIN_TOKENS` |" in text and "| `SYNC_ADMIN_TOKEN` |" in text


def test_settings_from_env_parse_the_documented_forms(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "SYNC_ADMIN_TOKENS": "alice:tok1,ci:tok2",
            "SYNC_ADMIN_TOKEN": "tok0",
            "SYNC_SOURCE_HEADERS": "X-Api-Key:abc,Accept-Language:en",
            "SYNC_CORS_ORIGINS": "https://a.example,https://b.example",
            "SYNC_PORT": "9001",
            "SYNC_DB_PATH": str(tmp_path / "x.db"),
            "HOME": "/ignored",
        }
    )
    tokens = {name: secret.get_secret_value() for name, secret in settings.admin_tokens.items()}
    assert tokens == {"alice": "tok1", "ci": "tok2", "admin": "tok0"}
    assert settings.source_headers == {"X-Api-Key": "abc", "Accept-Language": "en"}
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.port == 9001


def test_constructing_settings_never_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_PORT", "1234")
    monkeypatch.setenv("SYNC_ADMIN_TOKEN", "from-the-environment")
    assert Settings().port == 9000 and Settings().admin_tokens == {}
    assert Settings.from_env({"SYNC_PORT": "1235"}).port == 1235  # only the mapping given


def test_an_empty_optional_setting_is_unset_and_an_empty_number_is_an_error() -> None:
    assert Settings.from_env({"SYNC_SOURCE_URL": "", "SYNC_RUN_RETENTION_DAYS": ""}).source_url is None
    with pytest.raises(ValidationError, match="port"):
        Settings.from_env({"SYNC_PORT": ""})


def test_an_empty_admin_token_is_an_error_not_a_token_nobody_can_present() -> None:
    with pytest.raises(ValidationError, match="SYNC_ADMIN_TOKEN is empty"):
        Settings.from_env({"SYNC_ADMIN_TOKEN": ""})


def test_unknown_setting_is_an_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown setting SYNC_PROT"):
        Settings.from_env({"SYNC_PROT": "9000"})


def test_generated_token_only_when_none_configured() -> None:
    settings, token = Settings().with_generated_token()
    assert token is not None and len(token) >= 24
    assert settings.admin_tokens["generated"].get_secret_value() == token
    configured, none = settings.with_generated_token()
    assert none is None and configured is settings


async def test_every_audit_query_in_the_readme_runs_on_a_migrated_ledger(tmp_path: Path) -> None:
    import re
    import sqlite3

    from service.database.sqlite import SqliteDatabase
    from service.settings import DEFAULT_MIGRATIONS_DIR

    db_path = tmp_path / "audit.db"
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    statements: list[str] = []
    for block in blocks:
        current = ""
        for line in block.splitlines(keepends=True):
            current += line
            if sqlite3.complete_statement(current):
                statements.append(current.strip())
                current = ""
    assert len(statements) >= 10  # the parse found the block
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        for statement in statements:
            conn.execute(statement).fetchall()  # a column or table the schema lacks fails here


@pytest.mark.postgres
async def test_every_psql_audit_query_in_the_readme_runs_on_a_migrated_postgresql(postgres_url: str) -> None:
    import re

    import asyncpg

    from service.database.postgres import PostgresDatabase

    await (await PostgresDatabase.open(postgres_url)).close()
    blocks = re.findall(r"```postgresql\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    text = "\n".join(line for block in blocks for line in block.splitlines() if not line.startswith("--"))
    statements = [statement.strip() for statement in text.split(";") if statement.strip()]
    assert len(statements) >= 10  # the parse found the block
    conn = await asyncpg.connect(postgres_url)
    try:
        async with conn.transaction(readonly=True):  # an auditor's read-only session
            for statement in statements:
                await conn.fetch(statement)  # a column, view or function the schema lacks fails here
    finally:
        await conn.close()
