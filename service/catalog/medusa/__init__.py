"""The Medusa v2 shop sink: products, prices and categories published through the Admin API."""
