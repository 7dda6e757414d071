"""Per-service reports of pushed request logs: data (SQL over the rollups), PDF and JSON renderings.

Ground layer: imports nothing of the push package, only the tables it writes."""
