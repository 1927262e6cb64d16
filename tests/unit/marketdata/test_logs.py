from __future__ import annotations

import logging

from marketdata.logs import RepeatFilter


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_chatty_library_says_each_thing_once_a_window_and_counts_the_rest() -> None:
    now = [0.0]
    repeats = RepeatFilter(window_s=10, clock=lambda: now[0])
    passed = []
    for step in range(50):  # five seconds at ten attempts a second, then more
        now[0] = step * 0.1
        record = _record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused")
        if repeats.filter(record):
            passed.append(record.getMessage())
    now[0] = 10.5
    late = _record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused")
    assert repeats.filter(late)
    assert passed == ["Unable connect to node with id 1: refused"]
    assert late.getMessage() == (
        "Unable connect to node with id 1: refused (49 more like it in the last 10 s)"
    )


def test_our_own_lines_and_other_messages_always_pass() -> None:
    repeats = RepeatFilter(window_s=10, clock=lambda: 0.0)
    assert all(repeats.filter(_record("sinks.service", "batch not stored")) for _ in range(5))
    assert repeats.filter(_record("aiokafka", "first kind"))
    assert repeats.filter(_record("aiokafka.conn", "second kind"))
    assert not repeats.filter(_record("aiokafka", "first kind"))
