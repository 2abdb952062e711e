"""Pydantic models of what upstream feeds send: one product shape, in a DummyJSON page or an NDJSON line.

Validation is per item so that one bad product is an item error, never a failed run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

# SQLite's INTEGER (and every shop's) is signed 64-bit: a larger count cannot be stored as one.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class UpstreamProduct(BaseModel):
    """A product as DummyJSON (and our NDJSON feed) describes it; unknown fields are kept as extras.

    Prices arrive as JSON numbers; pydantic turns them into ``Decimal`` through the float's shortest
    repr, which gives back the exact literal for every price with at most 15 significant digits. Items
    whose numbers may have more are parsed exactly instead (see exact_json), so a price is never
    rounded: one finer than the currency's minor unit is refused by the mapping.

    Ids are taken as sent: one with spaces around it is refused rather than silently stripped, since
    ``" 42"`` and ``"42"`` would otherwise become the same product.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)

    id: StrictInt | str
    title: str = Field(min_length=1)
    description: str = ""
    category: str = Field(min_length=1)
    price: Decimal = Field(ge=0, allow_inf_nan=False)
    brand: str | None = None
    sku: str | None = None
    stock: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    thumbnail: str | None = None
    images: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_sent(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("id must not be empty")
            if value != value.strip():
                raise ValueError(f"id {value!r} has spaces around it; ids are taken as sent")
            if "\x00" in value:
                # SQLite's JSON functions end a string at NUL, so such an id could not be looked up.
                raise ValueError("id must not contain a NUL character")
        return value

    @field_validator("stock", mode="before")
    @classmethod
    def _stock_not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic's lax int would take true as 1
            raise ValueError("stock must be a number, not true or false")
        if isinstance(value, float) and math.isfinite(value):
            # As the literal was written: int(6.122729963488601e16) is ...008, the literal is ...010.
            return Decimal(repr(value))
        return value

    @property
    def external_id(self) -> str:
        return str(self.id)

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DummyJsonPage(BaseModel):
    """The envelope of one DummyJSON page; the products themselves are validated one by one."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    products: list[Any]
    total: int = Field(ge=0)
    skip: int = Field(ge=0)
    limit: int = Field(ge=0)


@dataclass(frozen=True, slots=True)
class PageRead:
    """One DummyJSON page as the pager uses it: each product as the JSON text the server sent (or, for
    an item that is not an object, its parsed value), and the envelope's numbers."""

    products: list[Any]
    total: int
    skip: int


class RawPage(msgspec.Struct):
    """The envelope decoded with each product left as its bytes, unparsed (the fast path)."""

    products: list[msgspec.Raw]
    total: int
    skip: int
    limit: int


def describe_validation_error(exc: ValidationError) -> str:
    """``title: Field required; price: Input should be greater than or equal to 0``."""
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "json_invalid":
            parts.append(f"invalid JSON: {error['ctx']['error'] if 'ctx' in error else error['msg']}")
            continue
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{location}: {error['msg']}" if location else str(error["msg"]))
    return "; ".join(parts)
