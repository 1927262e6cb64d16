"""One DTC connection: connect, negotiate the encoding, log on, heartbeat, read, log off.

The encoding is negotiated first, in binary (``ENCODING_REQUEST`` / ``ENCODING_RESPONSE``);
from then on every message is in the agreed encoding, which only this module and the codec
know. The client sends a ``HEARTBEAT`` every ``heartbeat_s`` seconds; noticing the server's
silence is the reader's job (:attr:`DtcSession.last_received`), since any message it sends
shows that the connection is alive. Reads are ``CHUNK`` bytes at most and the framer holds at
most one incomplete message, so a broken server cannot make the client buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from pydantic import SecretStr

from marketdata.settings import Settings
from producers.dtc import messages as m
from producers.dtc.codec import (
    BINARY,
    CODECS,
    Codec,
    DtcDecodeError,
    DtcError,
    Framer,
    Inflater,
    Message,
)

log = logging.getLogger(__name__)

CHUNK: Final = 64 * 1024
CLIENT_NAME: Final = "mdp"


class DtcConnectionLost(DtcError):
    """The server closed the connection, or it could not be opened."""

    retriable = True


class DtcLogonRejected(DtcError):
    """``LOGON_RESPONSE`` was not a success; the message is the server's ``ResultText``."""


class DtcLoggedOff(DtcError):
    """The server sent ``LOGOFF``; ``retriable`` is false when it said not to reconnect."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one DTC server port."""

    host: str
    port: int
    encoding: str = "binary"
    username: str = ""
    password: SecretStr | None = None
    heartbeat_s: int = 10

    @classmethod
    def market_data(cls, settings: Settings) -> Endpoint:
        return cls._at(settings, settings.dtc_ports[0])

    @classmethod
    def historical(cls, settings: Settings) -> Endpoint:
        return cls._at(settings, settings.dtc_ports[1])

    @classmethod
    def _at(cls, settings: Settings, port: int) -> Endpoint:
        return cls(settings.dtc_host, port, settings.dtc_encoding, settings.dtc_username,
                   settings.dtc_password, settings.dtc_heartbeat_s)  # fmt: skip

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.encoding})"


class DtcSession:
    """``await start()`` connects and logs on (returning the ``LOGON_RESPONSE``); ``aclose()``
    logs off and closes. Also an async context manager."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.codec: Codec = BINARY  # until the server agrees to another
        self.framer: Framer = BINARY.framer()
        self.logon: Message = {}
        self.last_received = time.monotonic()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self._ready: list[bytes] = []

    async def __aenter__(self) -> DtcSession:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def start(self) -> Message:
        try:
            async with asyncio.timeout(self.timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.endpoint.host, self.endpoint.port
                )
                await self._negotiate()
                self.logon = await self._log_on()
        except TimeoutError:
            await self.aclose(logoff=False)
            raise DtcConnectionLost(
                f"DTC server {self.endpoint} did not complete the logon in {self.timeout_s}s"
            ) from None
        except OSError as exc:
            await self.aclose(logoff=False)
            raise DtcConnectionLost(f"cannot reach DTC server {self.endpoint}: {exc}") from None
        except BaseException:
            await self.aclose(logoff=False)
            raise
        self._heartbeats = asyncio.create_task(self._beat(), name="dtc-heartbeats")
        return self.logon

    async def _negotiate(self) -> None:
        wanted = m.JSON_ENCODING if self.endpoint.encoding == "json" else m.BINARY_ENCODING
        await self.send({"Type": m.ENCODING_REQUEST, "Encoding": wanted})
        answer = await self._expect({m.ENCODING_RESPONSE})
        self._check_version(answer)
        agreed = {m.BINARY_ENCODING: "binary", m.JSON_ENCODING: "json"}.get(answer["Encoding"])
        if agreed is None:
            raise DtcError(f"DTC server {self.endpoint} chose encoding {answer['Encoding']}, "
                           "which this client does not speak")  # fmt: skip
        if agreed != self.endpoint.encoding:
            log.warning("DTC server %s speaks %s, not %s; using %s", self.endpoint, agreed,
                        self.endpoint.encoding, agreed)  # fmt: skip
        self.codec = CODECS[agreed]
        if agreed != "binary":
            rest, self.framer = self.framer.rest(), self.codec.framer()
            self._ready = self.framer.feed(rest)

    async def _log_on(self) -> Message:
        password = self.endpoint.password.get_secret_value() if self.endpoint.password else ""
        await self.send({
            "Type": m.LOGON_REQUEST, "Username": self.endpoint.username, "Password": password,
            "HeartbeatIntervalInSeconds": self.endpoint.heartbeat_s, "ClientName": CLIENT_NAME,
        })  # fmt: skip
        answer = await self._expect({m.LOGON_RESPONSE})
        self._check_version(answer)
        if answer["Result"] != m.LOGON_SUCCESS:
            raise DtcLogonRejected(
                f"DTC server {self.endpoint} refused the logon: {answer['ResultText'] or '?'}",
                retriable=answer["Result"] == m.LOGON_ERROR,
            )
        log.info("logged on to DTC server %s (%s)", self.endpoint,
                 answer["ServerName"] or "unnamed")  # fmt: skip
        return answer

    def _check_version(self, answer: Message) -> None:
        """Version 8 only, refused otherwise and not retried. Layouts before 8 differ from the
        structs this client decodes with, so their fields would be read at the wrong offsets.
        Above 8 nothing is published: the current header (navas8889/dtc-sdk @40077a08) still
        says ``CURRENT_VERSION = 8`` after years of changes that kept old readers working (fields
        appended to the end of a struct, which decoding ignores, retired ones renamed
        ``Unused`` in place, new message types), so a higher number announces a change of
        another kind, in layouts this client cannot know."""
        version = answer["ProtocolVersion"]
        if version != m.PROTOCOL_VERSION:
            why = ("older versions lay messages out otherwise" if version < m.PROTOCOL_VERSION
                   else "the current DTCProtocol.h's; no newer layouts are published")  # fmt: skip
            raise DtcError(
                f"DTC server {self.endpoint} speaks protocol version {version} (in its "
                f"{m.NAMES[answer['Type']]}); this client reads version {m.PROTOCOL_VERSION} "
                f"only ({why})"
            )

    async def _expect(self, types: set[int]) -> Message:
        """The next message of one of ``types``; heartbeats before it are fine, a logoff ends
        it. One frame at a time: what follows may be in another format (encoding, zlib)."""
        while True:
            for frame in await self.read_frames(limit=1):
                try:
                    message = self.codec.decode(frame)
                except DtcDecodeError as exc:  # one bad frame: the stream is still in step
                    log.warning("ignoring an undecodable DTC message while waiting: %s", exc)
                    continue
                if message["Type"] in types:
                    return message
                if message["Type"] == m.LOGOFF:
                    raise logged_off(message)
                if message["Type"] != m.HEARTBEAT:
                    log.debug("ignoring DTC message %d while waiting", message["Type"])

    async def read_frames(self, limit: int | None = None) -> list[bytes]:
        """The next whole messages (at least one), as raw frames; :class:`DtcConnectionLost`
        when the server closes, :class:`DtcFramingError` when the stream is garbage (after
        the whole frames before the garbage were returned; ``framer.rest()`` is then the
        garbage)."""
        if self._ready:
            frames, self._ready = self._ready, []
            return frames
        if self._reader is None:
            raise DtcConnectionLost("the DTC session is not started")
        frames = self.framer.feed(b"", limit) if self.framer.pending else []
        while not frames:
            try:
                data = await self._reader.read(CHUNK)
            except OSError as exc:
                raise DtcConnectionLost(f"DTC connection to {self.endpoint} lost: {exc}") from None
            if not data:
                raise DtcConnectionLost(f"DTC server {self.endpoint} closed the connection")
            self.last_received = time.monotonic()
            frames = self.framer.feed(data, limit)
        return frames

    def inflate(self) -> None:
        """From here on the server's bytes are one zlib stream of binary messages."""
        inflater = Inflater()
        self._ready = inflater.feed(self.framer.rest())
        self.framer = inflater

    def decode(self, frame: bytes) -> Message:
        return self.codec.decode(frame)

    async def send(self, message: dict[str, Any]) -> None:
        if self._writer is None:
            raise DtcConnectionLost("the DTC session is not started")
        try:
            self._writer.write(self.codec.encode(message))
            await self._writer.drain()
        except OSError as exc:
            raise DtcConnectionLost(f"DTC connection to {self.endpoint} failed: {exc}") from None

    async def _beat(self) -> None:
        with contextlib.suppress(DtcError):  # a lost connection shows on the reading side
            while True:
                await asyncio.sleep(self.endpoint.heartbeat_s)
                await self.send({"Type": m.HEARTBEAT, "CurrentDateTime": int(time.time())})

    async def aclose(self, *, logoff: bool = True, reason: str = "client closing") -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
            self._heartbeats = None
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if logoff and not writer.is_closing():
            with contextlib.suppress(OSError, DtcError):
                writer.write(self.codec.encode({"Type": m.LOGOFF, "Reason": reason}))
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                await writer.wait_closed()


def logged_off(message: Message) -> DtcLoggedOff:
    reason = message["Reason"] or "no reason given"
    again = not message["DoNotReconnect"]
    return DtcLoggedOff(f"DTC server logged off: {reason}", retriable=again)


__all__ = ["DtcDecodeError", "DtcSession", "Endpoint"]
