"""sinks of the market-data pipeline (see README)."""
