"""The policy engine: decides allow / deny / needs_approval for every argv."""
