"""Users, sessions, roles, API keys and scopes."""
