"""Alembic migrations of the market-data tables (run with `mdp migrate`)."""
