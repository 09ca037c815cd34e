"""Database engine, sessions and Alembic migrations shared by every domain."""
