"""Behaviour under dependency faults, on real PostgreSQL, Redis and server processes."""
