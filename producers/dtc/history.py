"""DTC historical price data: one request on the historical port, its records as they come.

Sierra Chart serves history on a port of its own and, typically, one request per connection:
connect, log on, send ``HISTORICAL_PRICE_DATA_REQUEST``, read the ``RESPONSE_HEADER`` (or a
``REJECT`` with the server's reason), then ``RECORD_RESPONSE``s (bars) or
``TICK_RECORD_RESPONSE``s (trades) until one has ``IsFinalRecord`` or the current header's
``HISTORICAL_PRICE_DATA_RESPONSE_TRAILER`` (807) comes: either ends the response. The trailer's
``FinalRecordLastDateTime`` is the time of the response's last record (seconds or
microseconds, by value as in the records); one later than the newest record received means
records went missing, which is logged; one that is no time at all is a dead letter. When the
header says
``UseZLibCompression``, everything after it is one zlib stream of binary messages; the client
asks for it only in the binary encoding, which is what Sierra Chart compresses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.dtc import messages as m
from producers.dtc import normalise
from producers.dtc.codec import (
    DtcDecodeError,
    DtcError,
    DtcFramingError,
    Message,
    UnhandledMessageType,
)
from producers.dtc.normalise import INTERVALS, Instrument, Occurrences
from producers.dtc.session import DtcSession, Endpoint, logged_off

log = logging.getLogger(__name__)

REQUEST_ID: Final = 1


class DtcHistoryRejected(DtcError):
    """``HISTORICAL_PRICE_DATA_REJECT``: the message is the server's text; ``retry_s`` is set
    when the server asked to try again after that many seconds."""

    def __init__(self, message: str, *, retry_s: int | None = None) -> None:
        super().__init__(message, retriable=retry_s is not None)
        self.retry_s = retry_s


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    instrument: Instrument
    interval: str  # a key of normalise.INTERVALS; "tick" for trades
    start: datetime
    end: datetime | None = None
    compress: bool = True

    def message(self, encoding: str) -> dict[str, object]:
        if self.interval not in INTERVALS:
            raise DtcError(f"unknown DTC interval {self.interval!r}; one of {', '.join(INTERVALS)}")
        return {
            "Type": m.HISTORICAL_PRICE_DATA_REQUEST, "RequestID": REQUEST_ID,
            "Symbol": self.instrument.symbol, "Exchange": self.instrument.exchange,
            "RecordInterval": INTERVALS[self.interval],
            "StartDateTime": int(self.start.timestamp()),
            "EndDateTime": int(self.end.timestamp()) if self.end else 0,
            "UseZLibCompression": int(self.compress and encoding == "binary"),
        }  # fmt: skip


@dataclass
class Page:
    """What one read brought: records, and the frames that did not normalise, with why."""

    records: list[Bar | Tick]
    rejected: list[tuple[bytes, str]]
    last: datetime | None  # the time of the newest record so far


async def fetch(
    endpoint: Endpoint, request: HistoryRequest, *, timeout_s: float = 30.0,
    now: datetime | None = None,
) -> AsyncIterator[Page]:  # fmt: skip
    """The records of ``request``, oldest first, a page per network read."""
    now = now or datetime.now(UTC)
    session = DtcSession(endpoint, timeout_s=timeout_s)
    await session.start()
    try:
        await session.send(request.message(session.codec.name))
        rejected: list[tuple[bytes, str]] = []
        header = await _header(session, request, timeout_s, rejected)
        if rejected:
            yield Page([], rejected, None)
        if header["NoRecordsToReturn"]:
            return
        if header["UseZLibCompression"]:
            session.inflate()
        async for page in _records(session, request, now, timeout_s):
            yield page
    finally:
        await session.aclose(reason="historical request complete")


async def _header(
    session: DtcSession, request: HistoryRequest, timeout_s: float,
    rejected: list[tuple[bytes, str]],
) -> Message:  # fmt: skip
    """The response header; undecodable frames before it go to ``rejected``."""
    async with asyncio.timeout(timeout_s):
        while True:
            for frame in await session.read_frames(limit=1):
                try:
                    message = session.decode(frame)
                except DtcDecodeError as exc:
                    rejected.append((frame, f"undecodable DTC message: {exc}"))
                    continue
                if message["Type"] == m.HISTORICAL_PRICE_DATA_RESPONSE_HEADER:
                    return message
                if message["Type"] == m.HISTORICAL_PRICE_DATA_REJECT:
                    retry = message["RetryTimeInSeconds"]
                    raise DtcHistoryRejected(
                        f"DTC server rejected history of {request.instrument} "
                        f"{request.interval}: {message['RejectText'] or 'no reason given'}",
                        retry_s=retry if message["RejectReasonCode"] == m.HPDR_RETRY_IN_SECONDS
                        else None,
                    )  # fmt: skip
                if message["Type"] == m.LOGOFF:
                    raise logged_off(message)


async def _records(
    session: DtcSession, request: HistoryRequest, now: datetime, timeout_s: float
) -> AsyncIterator[Page]:
    occurrences = Occurrences()
    instrument, interval = request.instrument, request.interval
    last: datetime | None = None
    final = False
    skipped: set[int] = set()
    while not final:
        try:
            async with asyncio.timeout(timeout_s):
                frames = await session.read_frames()
        except DtcFramingError as exc:
            # The records before the garbage were yielded; the garbage is kept as it came,
            # and the caller retries from the last record.
            yield Page([], [(session.framer.rest(), str(exc))], last)
            raise
        page = Page([], [], last)
        received_at = datetime.now(UTC)
        for frame in frames:
            try:
                message = session.decode(frame)
            except UnhandledMessageType as exc:
                _skip(exc.type, skipped)
                continue
            except DtcDecodeError as exc:
                page.rejected.append((frame, f"undecodable DTC message: {exc}"))
                continue
            type_ = message["Type"]
            if type_ == m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER:
                final = True
                _trailer(message, frame, page, request)
                break
            if type_ not in (m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE,
                             m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE):  # fmt: skip
                if type_ == m.LOGOFF:
                    raise logged_off(message)
                _skip(type_, skipped)
                continue
            final = bool(message["IsFinalRecord"])
            # Sierra Chart may close the stream with an empty final record.
            stamp = message.get("StartDateTime") or message.get("DateTime")
            if final and not stamp:
                break
            try:
                record: Bar | Tick = (
                    normalise.history_bar(message, instrument, interval, now)
                    if type_ == m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE
                    else normalise.trade(message, instrument, received_at, occurrences)
                )
            except InvalidRecord as exc:
                page.rejected.append((frame, f"malformed DTC {m.NAMES[type_]}: {exc}"))
            else:
                page.records.append(record)
                page.last = record.timestamp
            if final:
                break
        last = page.last
        yield page


def _skip(type_: int, skipped: set[int]) -> None:
    """A message a history response has no use for: heartbeats quietly, others logged once."""
    if type_ != m.HEARTBEAT and type_ not in skipped:
        skipped.add(type_)
        log.warning("DTC message type %d (%s) in a history response is not handled: skipped "
                    "(logged once per type)", type_, m.name_of(type_))  # fmt: skip


def _trailer(message: Message, frame: bytes, page: Page, request: HistoryRequest) -> None:
    """The response is complete; its trailer's time is checked against what arrived."""
    try:
        said = normalise.trailer_time(message)
    except InvalidRecord as exc:
        page.rejected.append((frame, f"malformed DTC {m.NAMES[message['Type']]}: {exc}"))
        return
    if said is not None and (page.last is None or said > page.last):
        newest = page.last.isoformat() if page.last else "none"
        log.warning("DTC history of %s %s: the server's trailer says its last record is at %s, "
                    "the newest received is at %s", request.instrument, request.interval,
                    said.isoformat(), newest)  # fmt: skip
