"""Domain-free helpers: database, jobs, time, rendering, errors."""
