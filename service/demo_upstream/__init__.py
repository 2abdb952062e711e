"""The demo upstream: a deterministic DummyJSON-compatible catalog (``products``) and its server."""
