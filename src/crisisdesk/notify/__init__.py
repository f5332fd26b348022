"""Subscribers, channels, and the delivery ledger that never loses a message."""
