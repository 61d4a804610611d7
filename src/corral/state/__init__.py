"""Persistent state: one SQLite database per daemon (``database.py``), its schema kept by
Alembic migrations; a store per concern over it, each with one mapper per table."""
