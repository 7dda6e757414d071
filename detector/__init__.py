"""upwatch detector."""
