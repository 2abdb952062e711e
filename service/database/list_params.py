"""List parameters: a list of ids bound as one JSON text, unpacked by the statement, on either backend.

One bound value of any length, where ``IN (?, ?, ...)`` would need a statement per list size (and
SQLite caps the number of parameters).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from service.database.access import Dialect


def json_array(values: Iterable[str]) -> str:
    """A list parameter for ``IN ({ids})`` (see :func:`each_dialect`)."""
    return orjson.dumps(list(values)).decode()


def json_rows(rows: Iterable[tuple[str | int, ...]]) -> str:
    """A list of rows (tuples of ids and integers) as one JSON array of arrays, for a statement that reads
    their fields itself."""
    return orjson.dumps(list(rows)).decode()


def json_object(pairs: Iterable[tuple[str, str]]) -> str:
    """Texts by id as one JSON object, for a statement that joins on its keys (a later pair of an id
    replaces an earlier one)."""
    return orjson.dumps(dict(pairs)).decode()


# The rows of a JSON array of strings, as a one-column ``value`` relation.
_UNPACK: dict[Dialect, str] = {
    "sqlite": "SELECT value FROM json_each({})",
    "postgres": "SELECT value FROM jsonb_array_elements_text({}::jsonb)",
}


def each_dialect(template: str, **lists: str) -> dict[Dialect, str]:
    """``template`` for each dialect, each ``{name}`` in it the unpacking of the list parameter named."""
    return {
        dialect: template.format(**{name: unpack.format(param) for name, param in lists.items()})
        for dialect, unpack in _UNPACK.items()
    }
