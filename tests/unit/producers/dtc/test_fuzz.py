"""Random bytes into the framers and decoders: they end, and fail only with the project's
errors; no frame is longer than its declared size, no buffer larger than one message."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from producers.dtc import messages as m
from producers.dtc.codec import (
    MAX_MESSAGE_SIZE,
    BinaryFramer,
    DtcDecodeError,
    DtcFramingError,
    Inflater,
    JsonFramer,
    decode_binary,
    decode_json,
)

chunks = st.lists(st.binary(max_size=512), max_size=16)
# Headers of real types with random sizes and bodies reach the field decoding, not only framing.
typed = st.builds(
    lambda size, type_, body: struct.pack("<HH", size, type_) + body,
    st.integers(0, 400), st.sampled_from([*sorted(m.SPECS), 9999, 113]), st.binary(max_size=400),
)  # fmt: skip


@settings(max_examples=400, deadline=500)
@given(chunks)
def test_the_binary_framer_only_cuts_declared_sizes(parts: list[bytes]) -> None:
    framer = BinaryFramer()
    fed = 0
    try:
        for part in parts:
            fed += len(part)
            for frame in framer.feed(part):
                (size,) = struct.unpack_from("<H", frame)
                assert len(frame) == size
                assert 4 <= size <= MAX_MESSAGE_SIZE
            assert framer.pending < MAX_MESSAGE_SIZE
            assert framer.pending <= fed
    except DtcFramingError:
        pass


@settings(max_examples=600, deadline=500)
@given(st.one_of(typed, st.binary(max_size=600)))
def test_binary_decoding_returns_a_message_or_a_decode_error(frame: bytes) -> None:
    try:
        message = decode_binary(frame)
    except DtcDecodeError:
        return
    spec = m.SPECS[message["Type"]]
    assert list(message) == ["Type", *spec.names]


@settings(max_examples=400, deadline=500)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_json_decoding_returns_a_message_or_a_decode_error(frame: bytes) -> None:
    try:
        message = decode_json(frame)
    except DtcDecodeError:
        return
    assert list(message) == ["Type", *m.SPECS[message["Type"]].names]


@settings(max_examples=200, deadline=500)
@given(chunks)
def test_the_json_framer_bounds_what_it_holds(parts: list[bytes]) -> None:
    framer = JsonFramer(max_size=1024)
    try:
        for part in parts:
            for frame in framer.feed(part):
                assert b"\0" not in frame
            assert framer.pending <= 1024
    except DtcFramingError:
        pass


@settings(max_examples=200, deadline=500)
@given(chunks)
def test_the_inflater_fails_cleanly_on_random_bytes(parts: list[bytes]) -> None:
    inflater = Inflater(chunk=1024)
    try:
        for part in parts:
            inflater.feed(part)
            assert inflater.pending < MAX_MESSAGE_SIZE
    except DtcFramingError:
        pass
