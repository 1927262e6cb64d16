"""Clients that stall are dropped by `mdp webhook` (the real process) within the read timeout."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.processors.support import free_port
from tests.integration.roles import role_process
from tests.integration.webhook.test_spool import _up
from tests.integration.webhook.test_webhook import SECRET, alert, signed

READ_TIMEOUT_S = 2.0
GRACE_S = 3.0  # scheduling on a busy 2-core machine; far below "still connected after 64 s"


def _head(body: bytes) -> bytes:
    lines = [b"POST /webhooks/tradingview HTTP/1.1", b"Host: 127.0.0.1",
             b"Content-Length: %d" % len(body)]  # fmt: skip
    lines += [f"{name}: {value}".encode() for name, value in signed(body).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.fixture
async def webhook_process(
    settings: Settings, tmp_path: Path, log: Path, processes: list[subprocess.Popen[bytes]]
) -> int:
    await ensure_topics(settings, settings.topics.all())
    port = free_port()
    env = {**settings.to_env(), "TRADINGVIEW_HMAC_SECRET": SECRET,
           "MDP_WEBHOOK_AUTH": "signature", "MDP_WEBHOOK_PORT": str(port),
           "MDP_WEBHOOK_SPOOL_DIR": str(tmp_path / "spool"),
           "MDP_WEBHOOK_READ_TIMEOUT_S": str(READ_TIMEOUT_S), "MDP_LOG_LEVEL": "DEBUG"}  # fmt: skip
    processes.append(role_process(["webhook"], env, log))
    await _up(f"http://127.0.0.1:{port}", "ready: kafka connected")
    return port


async def test_six_stalled_clients_are_all_dropped_within_the_read_timeout(
    webhook_process: int,
) -> None:
    body = alert(1)
    stalls = [
        b"",  # connects and sends nothing
        b"POST /webhooks/tradingview HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # part of its headers
        _head(body),  # its headers, then nothing (the 6 clients)
        _head(body),
        _head(body) + body[: len(body) // 2],  # part of its body
        _head(body) + body[:1],
    ]
    loop = asyncio.get_running_loop()

    async def stall(sent: bytes) -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", webhook_process)
        started = loop.time()
        writer.write(sent)
        await writer.drain()
        try:
            # Until the server closes the connection: read() returns at end of stream.
            answer = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S + GRACE_S)
        except TimeoutError:
            return float("inf"), b"still connected"
        finally:
            writer.close()
        return loop.time() - started, answer

    results = await asyncio.gather(*(stall(sent) for sent in stalls))
    for (elapsed, answer), sent in zip(results, stalls, strict=True):
        assert elapsed < READ_TIMEOUT_S + GRACE_S, (sent[:40], answer)
        assert elapsed > READ_TIMEOUT_S * 0.8, (sent[:40], answer)  # the deadline, not sooner
        if not sent.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in sent:
            assert answer.startswith(b"HTTP/1.1 408 "), answer  # no request yet: told why
            assert answer.endswith(b"request not received within 2 s"), answer


async def test_a_slow_but_timely_client_is_served(webhook_process: int, log: Path) -> None:
    body = alert(2)
    reader, writer = await asyncio.open_connection("127.0.0.1", webhook_process)
    try:
        for piece in (_head(body)[:20], _head(body)[20:], body[:10], body[10:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(READ_TIMEOUT_S / 5)  # 0.8 of the deadline in all
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.startswith(b"HTTP/1.1 202 "), status_line
        headers = await reader.readuntil(b"\r\n\r\n")
        length = int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert json.loads(await reader.readexactly(length))["status"] == "accepted"
    finally:
        writer.close()
    text = await asyncio.to_thread(log.read_text)  # the real process's log, at DEBUG
    assert "Application startup complete" in text
    assert SECRET not in text


async def test_a_kept_alive_connection_that_stalls_in_its_next_request_is_dropped(
    webhook_process: int,
) -> None:
    body = alert(3)
    reader, writer = await asyncio.open_connection("127.0.0.1", webhook_process)
    try:
        writer.write(_head(body) + body)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 202 ")
        headers = await reader.readuntil(b"\r\n\r\n")
        assert b"connection: close" not in headers.lower()  # kept alive
        await reader.readexactly(
            int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        )
        writer.write(_head(body))  # the next request's headers, then nothing
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S + GRACE_S)
    finally:
        writer.close()
    assert b" 202 " not in answer  # closed, never answered: the body did not come
