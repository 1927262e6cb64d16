"""webhook of the market-data pipeline (see README)."""
