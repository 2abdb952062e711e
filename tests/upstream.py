"""A DummyJSON-style upstream the tests own: real aiohttp on loopback, with knobs to slow it or hold it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def make_product(product_id: int, **overrides: Any) -> dict[str, Any]:
    categories = ["beauty", "fragrances", "furniture", "groceries", "home-decoration", "kitchen-accessories"]
    product: dict[str, Any] = {
        "id": product_id,
        "title": f"Product {product_id}",
        "description": f"Description of product {product_id}.",
        "category": categories[product_id % len(categories)],
        "price": f"{product_id % 97 + 0.99:.2f}",
        "discountPercentage": 5.5,
        "rating": 4.2,
        "stock": product_id % 50,
        "tags": ["tag-a", "tag-b"],
        "brand": f"Brand {product_id % 7}",
        "sku": f"SKU-{product_id:06d}",
        "weight": 2,
        "images": [f"https://cdn.example/products/{product_id}/1.png"],
        "thumbnail": f"https://cdn.example/products/{product_id}/thumb.png",
    }
    product["price"] = float(product["price"])
    product.update(overrides)
    return product


@dataclass
class FeedControl:
    """What the upstream serves and how: tests change these between and during runs."""

    products: list[dict[str, Any]] = field(default_factory=list)
    page_delay_s: float = 0.0
    gate: asyncio.Event | None = None  # when set to an unset Event, pages after the first wait for it
    requests: int = 0


def dummyjson_app(control: FeedControl) -> web.Application:
    async def products(request: web.Request) -> web.Response:
        control.requests += 1
        try:
            limit = int(request.query.get("limit", "30"))
            skip = int(request.query.get("skip", "0"))
        except ValueError:
            return web.json_response({"message": "Invalid limit or skip"}, status=400)
        if skip > 0 and control.gate is not None:
            await control.gate.wait()
        if control.page_delay_s:
            await asyncio.sleep(control.page_delay_s)
        page = control.products[skip:] if limit == 0 else control.products[skip : skip + limit]
        return web.json_response(
            {"products": page, "total": len(control.products), "skip": skip, "limit": len(page)}
        )

    app = web.Application()
    app.router.add_get("/products", products)
    return app
