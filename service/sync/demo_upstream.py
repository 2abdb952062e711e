"""A built-in upstream in DummyJSON's format, served on loopback, so the service syncs out of the box.

Products are generated deterministically from their index (no state, nothing random), lazily: a feed of
a million products is never held in memory. The same app serves NDJSON for large-feed tests and
benchmarks; ``python -m service.sync.demo_upstream --count N --port P`` serves it from its own process.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import orjson
from aiohttp import web

from service.settings import SourceFormat

DEFAULT_PRODUCT_COUNT = 194
LOOPBACK_HOSTS = ("127.0.0.1", "::1")
_NDJSON_BLOCK = 500

# category -> (nouns, brands); an empty brand slot means "no brand", as for many DummyJSON groceries.
_CATALOG: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "beauty",
        ("Mascara", "Eyeshadow Palette", "Powder Canister", "Lipstick", "Nail Polish"),
        ("Essence", "Glamour Beauty", "Velvet Touch", ""),
    ),
    (
        "fragrances",
        ("Eau de Parfum", "Cologne", "Body Mist", "Perfume Oil"),
        ("Calvin Klein", "Chanel", "Dior"),
    ),
    (
        "furniture",
        ("Bed", "Sofa", "Bedside Table", "Office Chair", "Bathroom Sink"),
        ("Annibale Colombo", "Furniture Co.", "Knoll", ""),
    ),
    (
        "groceries",
        (
            "Apple",
            "Beef Steak",
            "Cat Food",
            "Chicken Meat",
            "Cooking Oil",
            "Cucumber",
            "Dog Food",
            "Eggs",
            "Fish Steak",
            "Green Bell Pepper",
            "Honey Jar",
            "Ice Cream",
            "Juice",
            "Kiwi",
        ),
        ("",),
    ),
    (
        "home-decoration",
        ("Decoration Swing", "Family Tree Photo Frame", "House Showpiece Plant", "Table Lamp"),
        ("", "Decor Studio"),
    ),
    (
        "kitchen-accessories",
        (
            "Bamboo Spatula",
            "Black Aluminium Cup",
            "Chopping Board",
            "Citrus Squeezer",
            "Egg Slicer",
            "Electric Stove",
            "Fine Mesh Strainer",
            "Fork",
            "Glass",
            "Grater",
            "Hand Blender",
            "Ice Cube Tray",
            "Knife",
            "Lunch Box",
        ),
        ("", "Kitchen Pro"),
    ),
    (
        "laptops",
        ("MacBook Pro", "ThinkPad", "ZenBook", "Notebook", "Chromebook"),
        ("Apple", "Lenovo", "Asus", "Huawei", "Dell"),
    ),
    (
        "mens-shirts",
        (
            "Blue & Black Check Shirt",
            "Gigabyte Aorus Men Tshirt",
            "Man Plaid Shirt",
            "Man Short Sleeve Shirt",
        ),
        ("Fashion Trends", "Gigabyte", "Classic Wear"),
    ),
    (
        "mens-shoes",
        ("Nike Air Jordan", "Puma Future Rider", "Sports Sneakers", "Leather Oxfords"),
        ("Nike", "Puma", "Off White", "Classic Wear"),
    ),
    (
        "mens-watches",
        (
            "Brown Leather Belt Watch",
            "Longines Master Collection",
            "Rolex Cellini Date Black Dial",
            "Rolex Submariner Watch",
            "Rolex Datejust",
        ),
        ("Fashion Timepieces", "Longines", "Rolex"),
    ),
    (
        "mobile-accessories",
        (
            "Amazon Echo Plus",
            "Apple AirPods",
            "Beats Flex Earphones",
            "Charger Cable",
            "Monopod",
            "Selfie Lamp",
            "Wireless Charger",
        ),
        ("Amazon", "Apple", "Beats", ""),
    ),
    (
        "motorcycle",
        ("Generic Motorcycle", "Kawasaki Z800", "MotoGP CI.H1", "Scooter Motorcycle"),
        ("Generic Motors", "Kawasaki", "MotoGP", "ScootMaster"),
    ),
    (
        "skin-care",
        ("Attitude Super Leaves Hand Soap", "Olive Oil", "Vaseline Men Body and Face Lotion"),
        ("Attitude", "Olay", "Vaseline"),
    ),
    (
        "smartphones",
        ("iPhone", "Galaxy", "Pixel", "Oppo Reno", "Realme XT", "Vivo S1"),
        ("Apple", "Samsung", "Google", "Oppo", "Realme", "Vivo"),
    ),
    (
        "sports-accessories",
        (
            "American Football",
            "Baseball Ball",
            "Baseball Glove",
            "Basketball",
            "Cricket Bat",
            "Football",
            "Golf Ball",
            "Tennis Racket",
            "Volleyball",
        ),
        ("", "Sporty Co."),
    ),
    (
        "sunglasses",
        ("Black Sun Glasses", "Classic Sun Glasses", "Green and Black Glasses", "Party Glasses"),
        ("", "Sunnies"),
    ),
    ("tablets", ("iPad Mini", "Galaxy Tab", "Galaxy Tab White"), ("Apple", "Samsung")),
    ("tops", ("Blue Frock", "Girl Summer Dress", "Gray Dress", "Short Frock", "Tartan Dress"), ("",)),
    (
        "vehicle",
        ("300 Touring", "Charger SXT RWD", "Dodge Hornet", "Durango SXT RWD", "Pacifica Touring"),
        ("Chrysler", "Dodge"),
    ),
    (
        "womens-bags",
        (
            "Blue Women's Handbag",
            "Heshe Women's Leather Bag",
            "Prada Women Bag",
            "White Faux Leather Backpack",
        ),
        ("Heshe", "Prada", "Fashion Accessories"),
    ),
    (
        "womens-dresses",
        ("Black Women's Gown", "Corset Leather With Skirt", "Dress Pea", "Marni Red & Black Suit"),
        ("Dress Me", "Marni", ""),
    ),
    (
        "womens-jewellery",
        ("Green Crystal Earring", "Green Oval Earring", "Tropical Earring"),
        ("", "Gem Co."),
    ),
    (
        "womens-shoes",
        ("Black & Brown Slipper", "Calvin Klein Heel Shoes", "Golden Shoes Woman", "Pampi Shoes"),
        ("Calvin Klein", "Pampi", ""),
    ),
    (
        "womens-watches",
        (
            "IWC Ingenieur Automatic",
            "Rolex Cellini Moonphase",
            "Rolex Datejust Women",
            "Watch Gold for Women",
        ),
        ("IWC", "Rolex", "Fashion Co."),
    ),
)
_ADJECTIVES = (
    "Classic",
    "Essential",
    "Premium",
    "Compact",
    "Deluxe",
    "Eco",
    "Urban",
    "Vintage",
    "Smart",
    "Pro",
)
_AVAILABILITY = ("In Stock", "Low Stock", "Out of Stock")
_REVIEWERS = ("Eleanor Collins", "Lucas Gordon", "Nora Russell", "Aria Parker", "Jacob Cooper", "Lily Lee")
_COMMENTS = (
    "Would not recommend!",
    "Very satisfied!",
    "Highly impressed!",
    "Great value!",
    "Not as described",
)
# Two products share one title, as in the real DummyJSON catalog (its handle must be made unique).
_SHARED_TITLE_PAIR = (97, 98)
_TIMESTAMP = "2025-04-30T09:41:02.053Z"


def _mix(index: int, salt: int) -> int:
    """A cheap deterministic scramble of ``index`` (the same product every time, on every machine)."""
    value = (index * 2654435761 + salt * 40503 + 0x9E3779B9) & 0xFFFFFFFF
    value ^= value >> 16
    value = (value * 0x45D9F3B) & 0xFFFFFFFF
    return value ^ (value >> 16)


def demo_product(index: int, seed: int = 0, variant: int = 0) -> dict[str, Any]:
    """Product number ``index`` (0-based; its upstream id is index + 1), in DummyJSON's shape.

    ``variant`` N > 0 is a later state of the same catalog: a deterministic 10% of the products have
    their price raised by N dollars (re-sync benchmarks).
    """
    product = _generate(index, seed)
    if index == _SHARED_TITLE_PAIR[1]:
        twin = _generate(_SHARED_TITLE_PAIR[0], seed)
        product.update(title=twin["title"], category=twin["category"])
    if variant and changed_in_variant(index, variant):
        product["price"] = round(product["price"] + variant, 2)
    return product


def changed_in_variant(index: int, variant: int) -> bool:
    """Whether product ``index`` differs in ``variant`` from the base catalog (10% of them, spread out)."""
    return _mix(index, 1000 + variant) % 10 == 0


def _generate(index: int, seed: int) -> dict[str, Any]:
    category, nouns, brands = _CATALOG[index % len(_CATALOG)]
    r = _mix(index, seed)
    noun = nouns[(index // len(_CATALOG)) % len(nouns)]
    brand = brands[r % len(brands)]
    lead = brand or _ADJECTIVES[(r >> 4) % len(_ADJECTIVES)]
    # The number keeps titles unique in large feeds; the first catalog reads like the real one.
    title = f"{lead} {noun}" if index < len(_CATALOG) * len(nouns) else f"{lead} {noun} {index + 1}"
    dollars = [1, 4, 9, 12, 19, 29, 49, 79, 129, 299, 499, 1899][(r >> 8) % 12]
    price = dollars + ((r >> 12) % 100) / 100
    slug = "-".join(title.lower().replace("&", "and").replace("'", "").split())
    image_base = f"https://cdn.dummyjson.com/product-images/{category}/{slug}"
    stock = (r >> 16) % 120
    product: dict[str, Any] = {
        "id": index + 1,
        "title": title,
        "description": f"The {title} is a {category.replace('-', ' ')} favourite, built to last.",
        "category": category,
        "price": round(price, 2),
        "discountPercentage": round(((r >> 5) % 2000) / 100, 2),
        "rating": round(1 + ((r >> 7) % 400) / 100, 2),
        "stock": stock,
        "tags": [category.split("-")[0], noun.split()[-1].lower()],
        "sku": f"{category[:3].upper()}-{(brand or 'GEN')[:3].upper()}-{index + 1:06d}",
        "weight": 1 + (r >> 9) % 10,
        "dimensions": {
            "width": round(5 + (r % 2500) / 100, 2),
            "height": round(5 + (r >> 3) % 2500 / 100, 2),
            "depth": round(5 + (r >> 6) % 2500 / 100, 2),
        },
        "warrantyInformation": f"{1 + r % 3} year warranty",
        "shippingInformation": f"Ships in {1 + (r >> 2) % 7} business days",
        "availabilityStatus": _AVAILABILITY[0 if stock > 10 else 1 if stock else 2],
        "reviews": [
            {
                "rating": 1 + (r >> (3 * n)) % 5,
                "comment": _COMMENTS[(r >> n) % len(_COMMENTS)],
                "date": _TIMESTAMP,
                "reviewerName": _REVIEWERS[(r >> (2 * n)) % len(_REVIEWERS)],
            }
            for n in range(1 + r % 3)
        ],
        "returnPolicy": "30 days return policy",
        "minimumOrderQuantity": 1 + (r >> 11) % 50,
        "meta": {"createdAt": _TIMESTAMP, "updatedAt": _TIMESTAMP, "barcode": f"{r:013d}"[-13:]},
        "images": [f"{image_base}/{n}.webp" for n in range(1, 2 + r % 3)],
        "thumbnail": f"{image_base}/thumbnail.webp",
    }
    if brand:
        product["brand"] = brand
    return product


class SyntheticCatalog(Sequence[Mapping[str, Any]]):
    """``count`` demo products as a lazy sequence: each is generated when it is read."""

    def __init__(self, count: int = DEFAULT_PRODUCT_COUNT, seed: int = 0, variant: int = 0) -> None:
        self._count = count
        self._seed = seed
        self._variant = variant

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | Sequence[Mapping[str, Any]]:
        if isinstance(index, slice):
            return [demo_product(i, self._seed, self._variant) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return demo_product(index, self._seed, self._variant)


PRODUCTS_KEY = web.AppKey("products", Sequence[Mapping[str, Any]])


def _bad_request(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400, dumps=lambda v: orjson.dumps(v).decode())


def _query_int(request: web.Request, name: str, default: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return int(raw) if raw.isdigit() else None


async def products_page(request: web.Request) -> web.Response:
    """DummyJSON semantics: limit defaults to 30, limit=0 means all, ``limit`` answers what was returned."""
    products = request.app[PRODUCTS_KEY]
    limit = _query_int(request, "limit", 30)
    skip = _query_int(request, "skip", 0)
    if limit is None:
        return _bad_request("Invalid 'limit' - must be a number")
    if skip is None:
        return _bad_request("Invalid 'skip' - must be a number")
    end = len(products) if limit == 0 else min(len(products), skip + limit)
    page = list(products[skip:end]) if skip < end else []
    body = orjson.dumps({"products": page, "total": len(products), "skip": skip, "limit": len(page)})
    return web.Response(body=body, content_type="application/json")


def iter_ndjson(products: Sequence[Mapping[str, Any]], block: int = _NDJSON_BLOCK) -> Iterator[bytes]:
    """The feed as NDJSON blocks of ``block`` lines, generated as they are sent."""
    for start in range(0, len(products), block):
        yield b"".join(
            orjson.dumps(p, option=orjson.OPT_APPEND_NEWLINE) for p in products[start : start + block]
        )


async def products_ndjson(request: web.Request) -> web.StreamResponse:
    products = request.app[PRODUCTS_KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "X-Total-Count": str(len(products))}
    )
    await response.prepare(request)
    for block in iter_ndjson(products):
        await response.write(block)
    await response.write_eof()
    return response


def build_demo_app(
    products: Sequence[Mapping[str, Any]] | None = None, ndjson_file: Path | None = None
) -> web.Application:
    """``GET /products?limit=&skip=`` (DummyJSON) and ``GET /products.ndjson`` over ``products``.

    ``ndjson_file``: serve that pre-rendered feed instead, so a benchmark measures the client, not
    this generator.
    """
    app = web.Application()
    app[PRODUCTS_KEY] = products if products is not None else SyntheticCatalog()
    app.router.add_get("/products", products_page)
    if ndjson_file is None:
        app.router.add_get("/products.ndjson", products_ndjson)
    else:
        total = str(len(app[PRODUCTS_KEY]))

        async def prerendered(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(
                ndjson_file, headers={"Content-Type": "application/x-ndjson", "X-Total-Count": total}
            )

        app.router.add_get("/products.ndjson", prerendered)
    return app


class DemoUpstream:
    """The demo app on an ephemeral loopback port, for the service's no-source default and for tests.

    ``products`` (a sequence of DummyJSON-shaped dicts) wins over ``count`` synthetic products.
    """

    def __init__(
        self,
        products: Sequence[Mapping[str, Any]] | None = None,
        *,
        count: int = DEFAULT_PRODUCT_COUNT,
        source_format: SourceFormat = "dummyjson",
    ) -> None:
        self._app = build_demo_app(products if products is not None else SyntheticCatalog(count))
        self._source_format: SourceFormat = source_format
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    async def start(self) -> str:
        """Serve on 127.0.0.1 (port chosen by the OS); return the feed URL for the chosen format."""
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}"
        return self.url_for(self._source_format)

    def url_for(self, source_format: SourceFormat) -> str:
        if self._base_url is None:
            raise RuntimeError("demo upstream not started")
        return (
            f"{self._base_url}/products.ndjson" if source_format == "ndjson" else f"{self._base_url}/products"
        )

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a synthetic DummyJSON/NDJSON product feed on loopback."
    )
    parser.add_argument("--count", type=int, default=DEFAULT_PRODUCT_COUNT)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (127.0.0.1 or ::1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variant", type=int, default=0, help="N > 0: 10%% of the prices raised by N dollars"
    )
    parser.add_argument("--prerender", type=Path, help="render the NDJSON feed to this file first, serve it")
    parser.add_argument(
        "--ndjson-file", type=Path, help="serve this already rendered feed of --count products as NDJSON"
    )
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    host = f"[{args.host}]" if ":" in args.host else args.host
    catalog = SyntheticCatalog(args.count, args.seed, args.variant)
    if args.prerender is not None:
        with args.prerender.open("wb") as out:
            for block in iter_ndjson(catalog):
                out.write(block)
    print(
        f"serving {args.count} products: http://{host}:{args.port}/products and /products.ndjson", flush=True
    )
    web.run_app(
        build_demo_app(catalog, args.prerender or args.ndjson_file),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
