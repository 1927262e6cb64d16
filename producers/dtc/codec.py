"""DTC wire formats: binary and JSON encodings, message framing, and zlib-compressed streams.

Both encodings decode to the same thing, a ``dict`` holding ``Type`` and every field of the
message's spec (missing fields take their defaults, unknown keys are dropped), so nothing past
this module knows which encoding is in use.

Binary frames are cut by their ``uint16 Size``; JSON frames end with a NUL. A size under 4 or
above ``max_size``, or a JSON frame longer than ``max_size`` without its NUL, means the stream is
garbage: :class:`DtcFramingError`, and the connection must go, because nothing after it can be
trusted. A single frame that does not decode is a :class:`DtcDecodeError`: the stream stays in
step and the frame goes to the dead letters.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from marketdata.errors import MarketDataError
from producers.dtc.messages import INTEGER_RANGES, NAMES, OTHER_KNOWN_TYPES, SPECS, MessageSpec

Message = dict[str, Any]

# The largest message this client expects is under 300 bytes; 16 KiB leaves room for newer
# versions while a corrupt Size never makes it wait for, or buffer, much.
MAX_MESSAGE_SIZE: Final = 16 * 1024
HEADER: Final = struct.Struct("<HH")
_json_decoder: Final = msgspec.json.Decoder()


class DtcError(MarketDataError):
    """The DTC server or its byte stream misbehaved."""


class DtcFramingError(DtcError):
    """The byte stream cannot be cut into messages any more; the connection must be dropped."""

    retriable = True


class DtcDecodeError(DtcError):
    """One message could not be decoded; the stream is still in step."""


class UnknownMessageType(DtcDecodeError):
    def __init__(self, type_: int) -> None:
        super().__init__(f"unknown DTC message type {type_}")
        self.type = type_


class UnhandledMessageType(DtcDecodeError):
    """A type the header defines that this client does not decode (depth, orders, ...)."""

    def __init__(self, type_: int) -> None:
        super().__init__(f"DTC message type {type_} is not decoded by this client")
        self.type = type_


def _spec_of(type_: int) -> MessageSpec:
    spec = SPECS.get(type_)
    if spec is None:
        if type_ in OTHER_KNOWN_TYPES:
            raise UnhandledMessageType(type_)
        raise UnknownMessageType(type_)
    return spec


def _text(raw: bytes) -> str:
    # C strings: up to the first NUL; a server's stray non-UTF-8 byte must not kill the stream.
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# Binary -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Binary:
    keys: tuple[str, ...]  # "Type" and the fields, in unpack order after Size
    text: tuple[int, ...]  # positions of char arrays in the unpacked tuple
    image: bytes  # the struct as Clear() leaves it: the defaults of short messages


def _binary(spec: MessageSpec) -> _Binary:
    values = [_pack_value(f.code, f.size, spec.defaults[f.name]) for f in spec.fields]
    image = spec.layout.pack(spec.size, spec.type, *values)
    text = tuple(i + 2 for i, f in enumerate(spec.fields) if f.code == "s")
    return _Binary(("Type", *spec.names), text, image)


def _pack_value(code: str, size: int, value: Any) -> Any:
    if code == "s":
        return str(value).encode()[: size - 1]  # room for the terminating NUL, as Set...() does
    return value


_BINARY: Final = {type_: _binary(spec) for type_, spec in SPECS.items()}


def encode_binary(message: Mapping[str, Any]) -> bytes:
    """``message`` (``Type`` and any fields; the others take their defaults) as DTC binary."""
    spec = _spec_of(message["Type"])
    values = [_pack_value(f.code, f.size, message.get(f.name, spec.defaults[f.name]))
              for f in spec.fields]  # fmt: skip
    try:
        return spec.layout.pack(spec.size, spec.type, *values)
    except struct.error as exc:
        raise DtcError(f"cannot encode {spec.name}: {exc}") from None


def decode_binary(frame: bytes) -> Message:
    """One binary message (``Size`` bytes; anything after them is ignored)."""
    if len(frame) < HEADER.size:
        raise DtcDecodeError(f"a DTC message needs 4 header bytes, got {len(frame)}")
    size, type_ = HEADER.unpack_from(frame)
    if size < HEADER.size or size > len(frame):
        raise DtcDecodeError(f"message size {size} does not fit the {len(frame)} bytes given")
    spec = _spec_of(type_)
    binary = _BINARY[type_]
    if size >= spec.size:
        values = spec.layout.unpack_from(frame)  # a longer (newer) message: the rest is ignored
    else:
        # An older, shorter message: the fields it holds whole, then the defaults.
        cut = max((f.end for f in spec.fields if f.end <= size), default=HEADER.size)
        values = spec.layout.unpack(frame[:cut] + binary.image[cut:])
    fields = list(values[1:])
    for index in binary.text:
        fields[index - 1] = _text(fields[index - 1])
    return dict(zip(binary.keys, fields, strict=True))


class _Buffered:
    """What both framers keep: the bytes after the last whole message."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def rest(self) -> bytes:
        """The bytes after the last whole message (they follow a switch of stream format)."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest

    @property
    def pending(self) -> int:
        return len(self._buffer)


class BinaryFramer(_Buffered):
    """Cuts a byte stream into binary messages; holds at most one incomplete message."""

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """The whole messages now buffered (``limit`` at most: what follows may be in another
        format, such as a zlib stream after a historical response header)."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position, end = 0, len(buffer)
        while end - position >= HEADER.size and (limit is None or len(frames) < limit):
            size = buffer[position] | buffer[position + 1] << 8
            if size < HEADER.size or size > self.max_size:
                raise DtcFramingError(
                    f"garbage in the DTC stream: message size {size} outside "
                    f"[{HEADER.size}, {self.max_size}]"
                )
            if end - position < size:
                break
            frames.append(bytes(buffer[position : position + size]))
            position += size
        del buffer[:position]
        return frames


# JSON -------------------------------------------------------------------------------------


def encode_json(message: Mapping[str, Any]) -> bytes:
    """``message`` as a NUL-terminated JSON object, ``Type`` first, every field present."""
    spec = _spec_of(message["Type"])
    body = {"Type": spec.type, **{name: message.get(name, spec.defaults[name])
                                  for name in spec.names}}  # fmt: skip
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode() + b"\0"
    except ValueError as exc:
        raise DtcError(f"cannot encode {spec.name}: {exc}") from None


def _json_value(spec: MessageSpec, name: str, code: str, value: Any) -> Any:
    if code == "s":
        if isinstance(value, str):
            return value
    elif code in "fd":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = INTEGER_RANGES[code]
        if low <= value <= high:
            return value
    raise DtcDecodeError(f"{spec.name}.{name}: unexpected value {value!r}")


def decode_json(frame: bytes) -> Message:
    """One JSON message, with or without its terminating NUL."""
    body = frame[:-1] if frame.endswith(b"\0") else frame
    try:
        obj = _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DtcDecodeError(f"malformed DTC JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DtcDecodeError(f"a DTC JSON message must be an object, got {type(obj).__name__}")
    type_ = obj.get("Type")
    if not isinstance(type_, int) or isinstance(type_, bool):
        raise DtcDecodeError(f"a DTC JSON message needs an integer Type, got {type_!r}")
    spec = _spec_of(type_)
    message: Message = {"Type": type_}
    for field in spec.fields:
        value = obj.get(field.name)
        message[field.name] = (
            spec.defaults[field.name]
            if value is None
            else _json_value(spec, field.name, field.code, value)
        )
    return message


class JsonFramer(_Buffered):
    """Cuts a byte stream at NULs; a frame longer than ``max_size`` without one is garbage."""

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        if limit is None:
            *whole, rest = self._buffer.split(b"\0")
            self._buffer = bytearray(rest)
            frames = [bytes(frame) for frame in whole if frame]
        else:
            while len(frames) < limit and (end := self._buffer.find(b"\0")) >= 0:
                frame = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if frame:
                    frames.append(frame)
        if self._buffer.find(b"\0") < 0 and len(self._buffer) > self.max_size:
            raise DtcFramingError(f"garbage in the DTC stream: no NUL in {len(self._buffer)} bytes")
        return frames


# Both -------------------------------------------------------------------------------------


class Framer(Protocol):
    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]: ...

    def rest(self) -> bytes: ...

    @property
    def pending(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    encode: Callable[[Mapping[str, Any]], bytes]
    decode: Callable[[bytes], Message]
    framer: Callable[[], Framer]


BINARY: Final = Codec("binary", encode_binary, decode_binary, BinaryFramer)
JSON: Final = Codec("json", encode_json, decode_json, JsonFramer)
CODECS: Final = {"binary": BINARY, "json": JSON}


class Inflater:
    """A zlib stream of binary messages (compressed historical data) into whole messages,
    never inflating more than ``chunk`` bytes at a time, so a zlib bomb cannot exhaust memory."""

    def __init__(self, framer: BinaryFramer | None = None, chunk: int = 64 * 1024) -> None:
        self.framer = framer or BinaryFramer()
        self.chunk = chunk
        self._zlib = zlib.decompressobj()

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        del limit  # the records after a compressed header are all of one format
        frames: list[bytes] = []
        try:
            while data and not self._zlib.eof:
                frames += self.framer.feed(self._zlib.decompress(data, self.chunk))
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise DtcFramingError(f"corrupt zlib stream from the DTC server: {exc}") from None
        return frames

    @property
    def pending(self) -> int:
        return self.framer.pending

    def rest(self) -> bytes:
        return self.framer.rest()


def type_name(type_: int) -> str:
    return NAMES.get(type_, str(type_))
