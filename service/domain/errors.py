"""The one error a sync raises to end its run with a message."""


class SyncFailed(Exception):
    """The run cannot go on; ``str(exc)`` is the message the ledger stores as ``lastError``."""
