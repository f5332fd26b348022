"""Signals that something is wrong: alert sources, alerts and their groups, routing, checks, vendor watch."""
