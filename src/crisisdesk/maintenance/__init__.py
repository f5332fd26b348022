"""Scheduled maintenance windows that start and complete by themselves."""
