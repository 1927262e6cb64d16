"""Shared kernel of the market-data pipeline: records, codec, topics, settings, Kafka clients."""

__version__ = "0.1.0"
