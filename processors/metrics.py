"""The processors' Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
        self.buffer_messages = Histogram(
            "mdp_process_buffer_messages",
            "Raw messages per buffer an agent took (one when idle, more under load)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000),
            registry=registry,
        )
        # The intake stalls of issue #20: what to watch to see one.
        self.loop_lag = Histogram(
            "mdp_process_loop_lag_seconds",
            "How late the event loop ran a timer (its other work held it up)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.idle_with_backlog = Counter(
            "mdp_process_idle_with_backlog_seconds",
            "Time nothing was in hand or queued for an agent while the broker held unread "
            "input (sampled)",
            registry=registry,
        )
        self.intake_paused = Counter(
            "mdp_process_intake_paused",
            "Times faust stopped fetching a partition because its stream queue was near "
            "stream_buffer_maxsize",
            registry=registry,
        )
        self.gc_pauses = Histogram(
            "mdp_process_gc_pause_seconds",
            "Garbage collections of the oldest generation, how long each held the process",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
