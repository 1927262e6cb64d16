"""The publisher's gathering rule, and its time cap against a broker that never answers."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer

from marketdata.codec import decode
from marketdata.topics import Topics
from producers.publisher import Publisher, due
from tests.strategies import sample_tick


@pytest.mark.parametrize(
    ("waiting", "in_flight", "waited_s", "expected"),
    [
        (1, False, 0.0, 1),  # nothing in flight: at once
        (250, False, 0.0, 250),  # at once, however many (sent as envelopes of 100)
        (1, True, 0.0, 0),  # behind a send in flight: gathers
        (99, True, 0.049, 0),
        (100, True, 0.0, 100),  # the size cap: a whole envelope goes
        (250, True, 0.0, 200),  # whole envelopes go, the rest gathers
        (1, True, 0.05, 1),  # the time cap: everything goes
        (250, True, 0.06, 250),
        (0, False, 0.0, 0),
    ],
)
def test_what_is_due_now(waiting: int, in_flight: bool, waited_s: float, expected: int) -> None:
    assert due(waiting, in_flight, waited_s, max_records=100, linger_s=0.05) == expected


class Broker:
    """The producer's ``send`` as an I/O seam, never answering (a send stays in flight)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def envelopes(self) -> list[list[str | None]]:
        return [[getattr(r, "trade_id", None) for r in decode(value).records]
                for value in self.sent]  # fmt: skip


async def sends(broker: Broker, count: int) -> None:
    async with asyncio.timeout(5):
        while len(broker.sent) < count:  # noqa: ASYNC110 - a count, not an event
            await asyncio.sleep(0.01)


def publisher(broker: Broker, linger_s: float) -> Publisher:
    return Publisher(cast(AIOKafkaProducer, broker), Topics(""), stage="test", max_records=100,
                     linger_s=linger_s)  # fmt: skip


async def test_records_behind_an_unanswered_send_go_at_the_time_cap() -> None:
    broker = Broker()
    gathering = publisher(broker, linger_s=0.2)
    await gathering.add([sample_tick(trade_id="1")])
    await gathering.add([sample_tick(trade_id="2")])
    await gathering.add([sample_tick(trade_id="3")])
    await gathering.flush()  # "nothing more for now" does not cut the gathering short
    assert broker.envelopes() == [["1"]]
    await sends(broker, 2)
    assert broker.envelopes() == [["1"], ["2", "3"]]


async def test_records_behind_a_send_go_when_it_is_answered() -> None:
    broker = Broker()
    gathering = publisher(broker, linger_s=600)
    await gathering.add([sample_tick(trade_id="1")])
    await gathering.add([sample_tick(trade_id="2"), sample_tick(trade_id="3")])
    await asyncio.sleep(0.05)
    assert broker.envelopes() == [["1"]]
    broker.futures[0].set_result(None)
    await sends(broker, 2)
    assert broker.envelopes() == [["1"], ["2", "3"]]
    await gathering.add([sample_tick(trade_id="4")])  # behind 2-3, not yet answered
    assert len(broker.sent) == 2
    await gathering.flush(wait=False)
    assert len(broker.sent) == 2


async def test_other_instruments_do_not_wait_for_one_in_flight() -> None:
    broker = Broker()
    gathering = publisher(broker, linger_s=600)
    await gathering.add([sample_tick(trade_id="1")])
    await gathering.add([sample_tick(trade_id="2", symbol="ETHUSDT")])
    assert broker.envelopes() == [["1"], ["2"]]
