"""The adaptive intake's decision (processors.intake.Batching) and its stall watch, alone."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from processors.intake import Batching, Take, time_full_collections, unread, watch_intake
from processors.metrics import ProcessorMetrics


def test_an_event_alone_is_handed_out_at_once() -> None:
    batching = Batching(max_events=100, cap_s=10.0)
    assert batching.added(1, input_dry=True, now=5.0) is Take.HAND_OUT


def test_while_more_is_waiting_the_buffer_grows_until_the_cap() -> None:
    batching = Batching(max_events=100, cap_s=0.2)
    assert batching.remaining(now=1.0) is None  # empty: nothing is due
    assert batching.added(1, input_dry=False, now=1.0) is Take.WAIT
    assert batching.added(2, input_dry=False, now=1.15) is Take.WAIT
    # The cap counts from the first event, not the latest.
    assert batching.remaining(now=1.15) == 0.2 - 0.15 + 1.0 - 1.0
    assert batching.remaining(now=1.3) == 0.0
    assert batching.added(3, input_dry=True, now=1.16) is Take.HAND_OUT


def test_a_full_buffer_is_handed_out_even_with_more_waiting() -> None:
    batching = Batching(max_events=3, cap_s=10.0)
    assert batching.added(2, input_dry=False, now=0.0) is Take.WAIT
    assert batching.added(3, input_dry=False, now=0.0) is Take.FULL
    assert Batching(max_events=1, cap_s=1.0).added(1, input_dry=True, now=0.0) is Take.FULL


def test_the_next_buffer_starts_its_own_cap() -> None:
    batching = Batching(max_events=100, cap_s=1.0)
    batching.added(1, input_dry=False, now=10.0)
    batching.handed_out()
    assert batching.remaining(now=50.0) is None
    batching.added(1, input_dry=False, now=50.0)
    assert batching.remaining(now=50.25) == 0.75


def test_unread_counts_only_partitions_read_from() -> None:
    consumer = SimpleNamespace(
        _read_offset={"a": 9, "b": None, "c": 4},
        assignment=lambda: {"a", "b", "c", "d"},
        highwater=lambda tp: {"a": 15, "b": 7, "c": 5, "d": None}[tp],
    )
    # a: offsets 10..14 unread; b never read; c read up to its last; d unknown.
    assert unread(consumer) == 5


async def test_the_watch_counts_loop_lag_and_idle_time_with_a_backlog() -> None:
    metrics = ProcessorMetrics(CollectorRegistry())
    ticks = iter([0.0, 0.45, 0.45, 0.5, 0.5, 0.55])  # the first wake 0.4 s late
    idle = iter([True, False, True])
    backlog = iter([3, 0])
    # The fake clock running out ends the watch (StopIteration inside a coroutine).
    with pytest.raises(RuntimeError):
        await watch_intake(
            metrics, lambda: next(idle), lambda: next(backlog), period_s=0.0,
            clock=lambda: next(ticks),
        )  # fmt: skip
    registry = metrics.registry
    assert registry.get_sample_value("mdp_process_loop_lag_seconds_count") == 3
    assert registry.get_sample_value("mdp_process_loop_lag_seconds_bucket", {"le": "0.25"}) == 2
    # Idle with a backlog in the first period only (then busy, then idle with none unread).
    assert registry.get_sample_value("mdp_process_idle_with_backlog_seconds_total") == 0.45


async def test_a_stall_is_logged_with_its_length_once_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = ProcessorMetrics(CollectorRegistry())
    ticks = iter([0.0, 0.3, 0.3, 0.65, 0.65, 0.7])
    idle = iter([True, True, False])
    backlog = iter([5, 4])
    with pytest.raises(RuntimeError):
        await watch_intake(
            metrics, lambda: next(idle), lambda: next(backlog), period_s=0.0,
            clock=lambda: next(ticks), report_s=0.5,
        )  # fmt: skip
    stalls = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert stalls == ["intake stalled for 0.70 s with 5 messages unread"]


def test_full_collections_are_timed_and_a_long_one_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = ProcessorMetrics(CollectorRegistry())
    ticks = iter([1.0, 1.02, 5.0, 5.7])
    on_gc = time_full_collections(metrics.gc_pauses, clock=lambda: next(ticks))
    gc.callbacks.remove(on_gc)  # driven by hand here, not by the interpreter's collections
    on_gc("start", {"generation": 0})  # younger generations are not timed
    on_gc("stop", {"generation": 0, "collected": 3})
    for _ in range(2):
        on_gc("start", {"generation": 2})
        on_gc("stop", {"generation": 2, "collected": 7})
    registry = metrics.registry
    assert registry.get_sample_value("mdp_process_gc_pause_seconds_count") == 2
    assert registry.get_sample_value("mdp_process_gc_pause_seconds_bucket", {"le": "0.025"}) == 1
    logged = [r.getMessage() for r in caplog.records if "garbage" in r.getMessage()]
    assert logged == ["a full garbage collection held the process for 0.70 s (7 objects collected)"]
