"""Local accounts, roles and browser sessions."""
