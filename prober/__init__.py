"""upwatch prober."""
