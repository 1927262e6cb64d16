"""The TimescaleDB sink: Kafka batches to bulk upserts, offsets committed after the database."""
