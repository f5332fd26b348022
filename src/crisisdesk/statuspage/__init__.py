"""Public and private pages, snapshots, the Statuspage v2 API, feeds, widget, static export."""
