"""Support: tickets, matching them to incidents, macros, bulk replies and the agent brief."""
