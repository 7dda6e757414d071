"""upwatch: self-hosted synthetic uptime monitoring."""

__version__ = "0.1.0"
