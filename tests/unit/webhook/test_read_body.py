"""The app's own body read: any Content-Length header, a stalled or vanished client."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message

from webhook.app import _read_body
from webhook.auth import Rejected


def _request(content_length: bytes | None, messages: list[Message]) -> Request:
    headers = [(b"content-length", content_length)] if content_length is not None else []

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # a client that sends nothing more
        raise AssertionError("unreachable")

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def _body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


@pytest.mark.parametrize(
    ("declared", "status"),
    [
        ("²".encode("latin-1"), None),  # str.isdigit says yes; int() says no
        (b"9" * 5_000, 413),  # more digits than int() reads from text
        (b"999999999999", 413),
        (b"-1", None),
        (b"2", None),
    ],
)
async def test_any_content_length_is_a_body_or_413(declared: bytes, status: int | None) -> None:
    request = _request(declared, [_body(b"{}")])
    if status is None:
        assert await _read_body(request, 100, 1.0) == b"{}"
        return
    with pytest.raises(Rejected) as caught:
        await _read_body(request, 100, 1.0)
    assert caught.value.status == status


async def test_a_stalled_body_is_408_and_a_vanished_client_400() -> None:
    with pytest.raises(Rejected) as caught:
        await _read_body(_request(b"10", [_body(b"{", more=True)]), 100, 0.2)
    assert (caught.value.status, caught.value.reason) == (408, "body not received within 0.2 s")
    with pytest.raises(Rejected) as caught:
        await _read_body(_request(b"10", [_body(b"{", more=True), {"type": "http.disconnect"}]),
                         100, 1.0)  # fmt: skip
    assert caught.value.status == 400
