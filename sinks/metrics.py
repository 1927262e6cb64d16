"""The sink's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter("mdp_sink_messages", "Kafka messages consumed", registry=registry)
        self.rows = Counter(
            "mdp_sink_rows_written", "Rows inserted or updated", ["table"], registry=registry
        )
        self.duplicates = Counter(
            "mdp_sink_rows_unchanged",
            "Rows already stored as they are (replays absorbed by the upsert)",
            ["table"],
            registry=registry,
        )
        self.batches = Counter("mdp_sink_batches", "Batches committed", registry=registry)
        self.batch_seconds = Histogram(
            "mdp_sink_batch_seconds",
            "Database write and offset commit of one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.retries = Counter(
            "mdp_sink_retries", "Batch writes retried after a transient failure", registry=registry
        )
        self.dead_letters = Counter(
            "mdp_sink_dead_letters", "Messages sent to the dead-letter topic", registry=registry
        )
        self.abandoned = Counter(
            "mdp_sink_rows_abandoned",
            "Rows left uncommitted at shutdown or revocation (re-read by the next owner)",
            registry=registry,
        )
        self.lag = Gauge(
            "mdp_sink_consumer_lag",
            "Messages in the partition after the last committed offset",
            ["topic", "partition"],
            registry=registry,
        )
