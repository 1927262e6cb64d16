"""producers of the market-data pipeline (see README)."""
