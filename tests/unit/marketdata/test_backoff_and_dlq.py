from __future__ import annotations

import asyncio

from aiokafka import ConsumerRecord

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.dlq import dead_letter_headers


def test_backoff_grows_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.5)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in ceilings]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling * 0.5 <= delay <= ceiling
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_dead_letter_headers_keep_the_original_and_say_why() -> None:
    message = ConsumerRecord(
        topic="md.ticks", partition=3, offset=1234, timestamp=0, timestamp_type=0, key=b"k",
        value=b"v", checksum=None, serialized_key_size=1, serialized_value_size=1,
        headers=(("trace", b"abc"),),
    )  # fmt: skip
    headers = dead_letter_headers(message, "invalid record: price: must be finite", "sink")
    assert headers == [
        ("trace", b"abc"),
        ("mdp.reason", b"invalid record: price: must be finite"),
        ("mdp.stage", b"sink"),
        ("mdp.topic", b"md.ticks"),
        ("mdp.partition", b"3"),
        ("mdp.offset", b"1234"),
    ]


async def test_a_pause_ends_early_when_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await wait_or_stop(stop, 0.05) is False
    assert loop.time() - started >= 0.05
    loop.call_later(0.05, stop.set)
    started = loop.time()
    assert await wait_or_stop(stop, 30) is True
    assert loop.time() - started < 5
