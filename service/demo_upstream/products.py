"""The demo catalog: products in DummyJSON's shape, generated deterministically from their index.

No state, nothing random, and lazy: a feed of a million products is never held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

DEFAULT_PRODUCT_COUNT = 194

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
