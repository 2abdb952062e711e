"""Pydantic models of what upstream feeds send: one product shape, in a DummyJSON page or an NDJSON line.

Validation is per item so that one bad product is an item error, never a failed run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator


class UpstreamProduct(BaseModel):
    """A product as DummyJSON (and our NDJSON feed) describes it; unknown fields are kept as extras.

    Prices arrive as JSON numbers; pydantic turns them into ``Decimal`` through the float's shortest
    repr, which gives back the exact literal for every price with at most 15 significant digits.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)

    id: StrictInt | str
    title: str = Field(min_length=1)
    description: str = ""
    category: str = Field(min_length=1)
    price: Decimal = Field(ge=0, allow_inf_nan=False)
    brand: str | None = None
    sku: str | None = None
    stock: int | None = None
    thumbnail: str | None = None
    images: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _non_empty_id(cls, value: int | str) -> int | str:
        if isinstance(value, str) and not value:
            raise ValueError("id must not be empty")
        return value

    @property
    def external_id(self) -> str:
        return str(self.id)

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# The NDJSON feed carries the same product shape, one per line.
NdjsonProduct = UpstreamProduct


class DummyJsonPage(BaseModel):
    """The envelope of one DummyJSON page; the products themselves are validated one by one."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    products: list[Any]
    total: int = Field(ge=0)
    skip: int = Field(ge=0)
    limit: int = Field(ge=0)
