"""The command line: serve | sync | runs | migrate, and how ``sync`` and ``runs`` print."""
