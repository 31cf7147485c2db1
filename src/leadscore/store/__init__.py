"""Persistence: SQLAlchemy tables and the repositories that hold every query."""
