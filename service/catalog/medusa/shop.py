"""What the Medusa sink checks before a run can use the shop: the key, the sales channel, the currency."""

from __future__ import annotations

from dataclasses import dataclass

from service.catalog.medusa.client import MedusaClient, MedusaNotFound
from service.domain.errors import SyncFailed


class ShopUnusable(Exception):
    """The shop cannot take products as configured; the message says which setting to change."""


@dataclass(frozen=True, slots=True)
class Shop:
    sales_channel_id: str
    currency_code: str  # lower case, as Medusa keeps it


async def check_shop(client: MedusaClient, sales_channel_id: str | None, currency: str) -> Shop:
    """Reachable, key accepted, sales channel real (Medusa takes a bogus one silently), currency listed."""
    try:
        stores = (await client.read("/admin/stores"))["stores"]
    except SyncFailed as exc:
        raise ShopUnusable(f"Medusa at {client.target} is not usable: {exc}") from exc
    if not stores:
        raise ShopUnusable(f"Medusa at {client.target} has no store")
    store = stores[0]
    channel = sales_channel_id or store.get("default_sales_channel_id")
    if not channel:
        raise ShopUnusable("the store has no default sales channel: set SYNC_MEDUSA_SALES_CHANNEL_ID")
    try:
        await client.read(f"/admin/sales-channels/{channel}", {"fields": "id"})
    except MedusaNotFound:
        raise ShopUnusable(
            f"sales channel {channel} does not exist in Medusa at {client.target}"
            " (SYNC_MEDUSA_SALES_CHANNEL_ID)"
        ) from None
    except SyncFailed as exc:
        raise ShopUnusable(f"Medusa at {client.target} is not usable: {exc}") from exc
    code = currency.lower()
    listed = [entry.get("currency_code") for entry in store.get("supported_currencies") or []]
    if code not in listed:
        raise ShopUnusable(
            f"the store does not list the currency {code} (SYNC_CURRENCY);"
            f" it lists {', '.join(map(str, listed)) or 'none'}"
        )
    return Shop(channel, code)
