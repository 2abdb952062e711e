"""The layout's rules, checked from the sources: no import cycles, and workers that stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import service
from service.catalog.postgres_fingerprints import PostgresFingerprints
from service.catalog.sqlite_fingerprints import SqliteFingerprints
from service.transport.offload import WORKER_PRELOAD

SERVICE_ROOT = Path(service.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> Iterator[str]:
    """The service modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_checking_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking_only.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in type_checking_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from service.x import y`` may import the module service.x.y.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name in modules:
                yield name


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in SERVICE_ROOT.rglob("*.py")}
    modules = set(paths)
    return {name: set(_imports(path, modules)) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(module: str) -> list[str] | None:
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported in on_stack:
                return [*stack[stack.index(imported) :], imported]
            if imported not in done:
                found = visit(imported)
                if found:
                    return found
        stack.pop()
        on_stack.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            found = visit(module)
            if found:
                return found
    return None


def test_the_graph_builder_finds_a_cycle_when_there_is_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_holds_the_real_imports() -> None:
    graph = import_graph()
    assert "service.sync.job" in graph["service.sync.runner"]
    assert "service.catalog.sink" in graph["service.sync.engine"]
    assert len(graph) > 40


def test_no_module_of_the_service_imports_itself_back() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_mapping_workers_import_neither_the_drivers_nor_the_ledger() -> None:
    # What a worker process imports: the fork server's preload, then the fingerprint lookup it is sent.
    # Of the database layer, only the seam's protocols and the list parameter (plain functions).
    modules = [*WORKER_PRELOAD, SqliteFingerprints.__module__, PostgresFingerprints.__module__]
    light = ("service.database", "service.database.access", "service.database.list_params")
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "drivers = ('aiosqlite', 'aiohttp', 'asyncpg')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in drivers"
        f" or m.startswith(('service.ledger', 'service.database', 'service.api')) and m not in {light!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    # The probe can tell: what the service opens its database with does import them.
    heavy = probe.replace(repr(modules), repr(["service.resources"]))
    done = subprocess.run([sys.executable, "-c", heavy], capture_output=True, text=True, check=True)
    assert "aiosqlite" in done.stdout.split(",") and "service.ledger.runs" in done.stdout
