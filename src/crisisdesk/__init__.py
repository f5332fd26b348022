"""crisisdesk: a self-hosted crisis command center."""
