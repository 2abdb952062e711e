"""Telling others how runs ended: webhook events, signed, delivered from an outbox in the database."""
