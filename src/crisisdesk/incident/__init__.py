"""Incidents, severity policy, lifecycle, affected components, updates, roles, timeline."""
