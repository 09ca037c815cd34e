"""Process-wide settings (environment variables ``SQUADS_*``)."""
