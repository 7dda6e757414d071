"""upwatch alerter."""
