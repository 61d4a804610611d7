"""Alembic environment: runs on the connection Corral hands over (never reads alembic.ini).

The revisions in ``versions/`` are the schema's only description (the stores map rows by
hand, one mapper per table), so there is no metadata to compare against."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
