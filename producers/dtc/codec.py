"""DTC wire formats: binary and JSON encodings, message framing, and zlib-compressed streams.

Both encodings decode to the same thing, a ``dict`` holding ``Type`` and every field of the
message's spec (missing fields take their defaults, unknown keys are dropped), so nothing past
this module knows which encoding is in use.

Binary frames are cut by their ``uint16 Size``; JSON frames end with a NUL. A single frame
that does not decode is a :class:`DtcDecodeError`: the stream stays in step and only that frame
goes to the dead letters. Decoding is total: any bytes give a message or a ``DtcDecodeError``
(nesting, huge numbers, wrong types and invalid UTF-8 included).

Where the stream cannot be cut any more, the framers deliver every whole frame before that
point and only then raise :class:`DtcFramingError`, keeping the bytes from that point on for
:meth:`rest` (the dead letter); the connection must then be replaced. That point is, in binary,
a ``Size`` under 4 or above ``max_size`` (``Size`` 0 included): binary DTC has no sync marker,
and guessing the next header inside garbage could publish a made-up trade, so the rest of the
buffer is dead-lettered as it came and the session starts afresh (re-subscribing gets a new
snapshot). In JSON each NUL-terminated frame stands alone, so garbage between two NULs costs
only that frame; only more than ``max_size`` bytes without a NUL break the stream.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from marketdata.errors import MarketDataError
from producers.dtc.messages import (
    DBL_MAX,
    FLT_MAX,
    INTEGER_RANGES,
    NAMES,
    OTHER_KNOWN_TYPES,
    SPECS,
    MessageSpec,
)

Message = dict[str, Any]

# The largest message this client expects is under 300 bytes; 16 KiB leaves room for newer
# versions while a corrupt Size never makes it wait for, or buffer, much.
MAX_MESSAGE_SIZE: Final = 16 * 1024
HEADER: Final = struct.Struct("<HH")
_json_decoder: Final = msgspec.json.Decoder()
_FLOAT_LIMIT: Final = {"f": FLT_MAX, "d": DBL_MAX}


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


_DECODING_ERRORS: Final = (RecursionError, OverflowError, ValueError, TypeError, MemoryError)


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
    try:
        return _decode_binary(frame)
    except (*_DECODING_ERRORS, struct.error) as exc:  # not expected: the layouts fix every type
        raise DtcDecodeError(f"undecodable DTC binary message: {type(exc).__name__}") from None


def _decode_binary(frame: bytes) -> Message:
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
    """What both framers keep: the bytes after the last whole message and, once the stream
    broke, why (raised by the next :meth:`feed`, after the frames before it were delivered)."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._broken: DtcFramingError | None = None

    def rest(self) -> bytes:
        """The bytes after the last whole message (they follow a switch of stream format, or
        they are the garbage that broke the stream)."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest

    @property
    def pending(self) -> int:
        return len(self._buffer) or int(self._broken is not None)

    def _check(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _break(self, frames: list[bytes], reason: str) -> list[bytes]:
        """The stream broke here: the frames before it now, the error on the next feed."""
        self._broken = DtcFramingError(f"garbage in the DTC stream: {reason}")
        if not frames:
            raise self._broken
        return frames


class BinaryFramer(_Buffered):
    """Cuts a byte stream into binary messages; holds at most one incomplete message."""

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """The whole messages now buffered (``limit`` at most: what follows may be in another
        format, such as a zlib stream after a historical response header)."""
        self._check()
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position, end = 0, len(buffer)
        while end - position >= HEADER.size and (limit is None or len(frames) < limit):
            size = buffer[position] | buffer[position + 1] << 8
            if size < HEADER.size or size > self.max_size:
                del buffer[:position]
                return self._break(
                    frames, f"message size {size} outside [{HEADER.size}, {self.max_size}]"
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


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _json_value(spec: MessageSpec, name: str, code: str, value: Any) -> Any:
    """A JSON value as the C field would hold it: the field's type and range, else an error
    (a JSON number need not fit a double, let alone a float32)."""
    if code == "s":
        if isinstance(value, str):
            return value
    elif code in "fd":
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value) if abs(value) <= _FLOAT_LIMIT[code] else math.inf
            if math.isfinite(number) and abs(number) <= _FLOAT_LIMIT[code]:
                return number
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = INTEGER_RANGES[code]
        if low <= value <= high:
            return value
    raise DtcDecodeError(f"{spec.name}.{name}: unexpected value {_shown(value)}")


def decode_json(frame: bytes) -> Message:
    """One JSON message, with or without its terminating NUL; any other input (nested 10,000
    deep, numbers no C type holds, a value of the wrong type, not an object, not UTF-8) is a
    :class:`DtcDecodeError`."""
    try:
        return _decode_json(frame)
    except DtcDecodeError:
        raise
    except _DECODING_ERRORS as exc:
        raise DtcDecodeError(f"malformed DTC JSON: {type(exc).__name__}: {exc}"[:200]) from None


def _decode_json(frame: bytes) -> Message:
    body = frame[:-1] if frame.endswith(b"\0") else frame
    try:
        obj = _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DtcDecodeError(f"malformed DTC JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DtcDecodeError(f"a DTC JSON message must be an object, got {type(obj).__name__}")
    type_ = obj.get("Type")
    if not isinstance(type_, int) or isinstance(type_, bool):
        raise DtcDecodeError(f"a DTC JSON message needs an integer Type, got {_shown(type_)}")
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
    """Cuts a byte stream at NULs; more than ``max_size`` bytes without one break the stream."""

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        self._check()
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
        if len(self._buffer) > self.max_size and self._buffer.find(b"\0") < 0:
            return self._break(frames, f"no NUL in {len(self._buffer)} bytes")
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


_ZLIB_PIECE: Final = 1024


class Inflater:
    """A zlib stream of binary messages (compressed historical data) into whole messages,
    never inflating more than ``chunk`` bytes at a time, so a zlib bomb cannot exhaust memory."""

    def __init__(self, framer: BinaryFramer | None = None, chunk: int = 64 * 1024) -> None:
        self.framer = framer or BinaryFramer()
        self.chunk = chunk
        self._zlib = zlib.decompressobj()
        self._broken: DtcFramingError | None = None
        self._garbage = b""

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        del limit  # the records after a compressed header are all of one format
        if self._broken is not None:
            raise self._broken
        frames: list[bytes] = []
        # In small pieces: a corrupt block loses the output of its own call only, so the
        # records before it are delivered before the error.
        for start in range(0, len(data), _ZLIB_PIECE):
            piece = data[start : start + _ZLIB_PIECE]
            try:
                while piece and not self._zlib.eof:
                    frames += self.framer.feed(self._zlib.decompress(piece, self.chunk))
                    piece = self._zlib.unconsumed_tail
            except zlib.error as exc:
                self._garbage = piece + data[start + _ZLIB_PIECE :]
                self._broken = DtcFramingError(f"corrupt zlib stream from the DTC server: {exc}")
            except DtcFramingError as exc:
                self._broken = exc
            if self._broken is not None:
                if not frames:
                    raise self._broken
                break
        return frames

    @property
    def pending(self) -> int:
        return self.framer.pending or int(self._broken is not None)

    def rest(self) -> bytes:
        """What is left: inflated bytes not yet a whole message, then compressed ones that
        would not inflate."""
        rest, self._garbage = self.framer.rest() + self._garbage, b""
        return rest


def type_name(type_: int) -> str:
    return NAMES.get(type_, str(type_))
