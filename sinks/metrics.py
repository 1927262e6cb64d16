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
        self.batch_rows = Histogram(
            "mdp_sink_batch_rows",
            "Records in one committed batch (dead letters included): small when the input runs"
            " dry between messages, large under load",
            buckets=(1, 10, 100, 1000, 2500, 5000, 10_000, 20_000, 50_000, 100_000),
            registry=registry,
        )
        self.batch_reasons = Counter(
            "mdp_sink_batch_reasons",
            "Batches taken for writing, by why: the input ran dry, the size cap"
            " (MDP_SINK_BATCH_ROWS) or the time cap (MDP_SINK_BATCH_MS)",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "mdp_sink_retries", "Batch writes retried after a transient failure", registry=registry
        )
        self.dead_letters = Counter(
            "mdp_sink_dead_letters", "Messages sent to the dead-letter topic", registry=registry
        )
        self.isolations = Counter(
            "mdp_sink_isolations",
            "Batches the database rejected for their data, bisected to isolate the rows at fault",
            registry=registry,
        )
        self.isolation_writes = Counter(
            "mdp_sink_isolation_writes",
            "Writes of a part of a rejected batch while bisecting it",
            registry=registry,
        )
        self.rejected = Counter(
            "mdp_sink_rows_rejected",
            "Records the database refused alone, dead-lettered with its message",
            ["table"],
            registry=registry,
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
