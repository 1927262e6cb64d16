"""The processors' Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages_in = Counter(
            "mdp_process_messages_in", "Raw Kafka messages consumed", ["topic"], registry=registry
        )
        self.records_in = Counter(
            "mdp_process_records_in", "Records decoded from raw messages", registry=registry
        )
        self.records_out = Counter(
            "mdp_process_records_out", "Records emitted in batches", ["kind"], registry=registry
        )
        self.duplicates = Counter(
            "mdp_process_duplicates_dropped",
            "Ticks already emitted and bar versions superseded",
            registry=registry,
        )
        self.batches = Counter(
            "mdp_process_batches_out", "Batch messages emitted", registry=registry
        )
        self.dead_letters = Counter(
            "mdp_process_dead_letters", "Messages sent to the dead-letter topic", registry=registry
        )
        self.window_loads = Counter(
            "mdp_process_window_keys_loaded",
            "Keys reloaded from the output topic into a dedupe window after an assignment",
            registry=registry,
        )
